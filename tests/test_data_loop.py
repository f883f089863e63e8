"""The data loop end to end, through real dvc, git and a browser: drawn cats and dogs with label flips planted at
known places (cat.17.jpg filed under dogs/); `dvc repro audit`; the most suspicious accepted in bulk with
`imagefolder-review --accept-suggested`; the others decided on the review page in headless Chromium (a flip
accepted, anything else kept) and merged with `imagefolder-review --merge`; `dvc repro`. Then the flips found carry
their true labels, the kept images are not listed again, no image changed split, and download did not re-run while
every stage after it did."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stages.lib import audit, review_page
from stages.lib.file_lists import SPLITS, read_split
from tests.conftest import ROOT, flipped_sample_archive
from tests.test_dvc_workflow import STAGES, ran, sh

pytestmark = pytest.mark.slow

FAST = {"baseline.epochs": 1, "transfer.epochs": 2, "finetune.epochs": 1, "transfer.batch_size": 16,
        "finetune.batch_size": 16}  # fmt: skip


def true_class(path: str) -> str:
    return "cats" if Path(path).name.startswith("cat.") else "dogs"


def sides(workspace: Path) -> dict[str, tuple[str, str]]:
    """Each listed image's split and label."""
    lists = {split: read_split(workspace / "data" / "splits", split) for split in SPLITS}
    return {row.path: (split, row.label) for split, frame in lists.items() for row in frame.itertuples()}


def test_audit_review_repro_corrects_the_planted_flips_and_moves_nothing(tmp_path: Path, browser_page):
    archive = tmp_path / "flipped.zip"
    flipped = flipped_sample_archive(archive, train_per_class=40, validation_per_class=30, every=10)
    workspace = tmp_path / "loop"
    overrides = [arg for key, value in {"data.source": archive, **FAST}.items() for arg in ("-S", f"{key}={value}")]
    out = sh("bash", str(ROOT / "scripts" / "demo.sh"), str(workspace), "audit", *overrides, cwd=ROOT)
    assert ran(out) == {"download", "split", "encode", "audit"}
    issues = audit.read(workspace / "reports" / "audit")[audit.LABEL_ISSUES]
    found = flipped & set(issues["path"])
    assert len(found) >= len(flipped) / 2, f"the audit found {len(found)} of {len(flipped)} planted flips"
    assert (issues.loc[issues["path"].isin(found), "suggested"] == issues.loc[issues["path"].isin(found), "path"]
            .map(true_class)).all()  # fmt: skip

    # In bulk: the three most suspicious, as a user accepting the audit's top suggestions unseen.
    review = ["python", "-m", "stages.review"]
    assert "3 added, 0 replaced" in sh(*review, "--accept-suggested", "3", cwd=workspace)
    # On the page: every suspect looked at, a flip accepted, anything else kept (its label is right), which replaces
    # an unseen acceptance of the first three.
    page = browser_page
    page.goto((workspace / "reports" / "audit" / audit.REVIEW_PAGE).as_uri())
    decided = {}
    for path, sha256 in zip(issues["path"], issues["sha256"]):
        action = "accept" if path in flipped else "keep"
        page.locator(f'#suspects .card[data-sha256="{sha256}"] button[data-action="{action}"]').click()
        decided[path] = action
    with page.expect_download() as download:
        page.locator("#save").click()
    download.value.save_as(workspace / review_page.DECISIONS_FILE)
    assert page.errors == []
    top_kept = sum(decided[path] == "keep" for path in issues["path"].iloc[:3])
    merged = sh(*review, "--merge", review_page.DECISIONS_FILE, cwd=workspace)
    assert f"{len(issues) - 3} added, {top_kept} replaced, {3 - top_kept} already there" in merged
    before = sides(workspace)

    out = sh("dvc", "repro", cwd=workspace)
    assert ran(out) == STAGES - {"download"}  # the data did not change; the labels did
    after = sides(workspace)
    assert {path: split for path, (split, _) in after.items()} == {path: split for path, (split, _) in before.items()}
    for path in found:
        assert after[path][1] == true_class(path), path  # the flip carries its true label
    kept = {path for path, action in decided.items() if action == "keep"}
    for path in set(after) - found:
        assert after[path][1] == before[path][1], path  # nothing else relabelled
    lists = pd.concat([read_split(workspace / "data" / "splits", split) for split in SPLITS]).set_index("path")
    assert set(lists.index[lists["correction"] == "keep"]) == kept
    assert (lists.loc[sorted(found), "given"] != lists.loc[sorted(found), "label"]).all()  # the folder, recorded
    metrics = json.loads((workspace / "metrics" / "split.json").read_text())
    assert metrics["corrections.relabelled"] == len(found) and metrics["corrections.kept"] == len(kept)
    again = audit.read(workspace / "reports" / "audit")[audit.LABEL_ISSUES]
    assert not kept & set(again["path"])  # reviewed: not listed again
    assert len(found & set(again["path"])) <= 1  # audited under their true labels, the judge now agrees
