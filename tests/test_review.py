"""imagefolder-review: the audit's suggestions in bulk (the N most suspicious, of one split, under a score) and the
review page's saved rows, merged into corrections.csv (a later decision about an image replaces the earlier);
a weak judge warned of; bad input one line, corrections.csv untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from stages import review
from stages.lib import audit, corrections
from stages.lib.errors import PipelineError
from tests.conftest import ROOT

CLASSES = ["None", "macro", "猫"]


def digest(n: int) -> str:
    return f"{n:064x}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An audited project: four suspects, most suspicious first; the class names encode wrote; no corrections."""
    monkeypatch.chdir(tmp_path)
    issues = pd.DataFrame(
        {"path": ["test/None/1.jpg", "train/macro/2.jpg", "test/猫/3.jpg", "val/None/4.jpg"],
         "split": ["test", "train", "test", "val"], "given": ["None", "macro", "猫", "None"],
         "suggested": ["macro", "None", "None", "猫"], "score": [0.01, 0.02, 0.3, 0.4],
         "sha256": [digest(1), digest(2), digest(3), digest(4)]}
    )  # fmt: skip
    (tmp_path / "reports" / "audit").mkdir(parents=True)
    audit.write(tmp_path / "reports" / "audit", audit.empty_tables() | {audit.LABEL_ISSUES: issues})
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "audit.json").write_text(json.dumps({"audit.judge_weak": False}))
    (tmp_path / "data" / "tfrecords").mkdir(parents=True)
    (tmp_path / "data" / "tfrecords" / "meta.json").write_text(json.dumps({"class_names": CLASSES}))
    (tmp_path / "corrections.csv").write_text((ROOT / "corrections.csv").read_text())
    return tmp_path


def rows(project: Path) -> list[tuple[str, str, str]]:
    return [(row.path, row.action, row.label) for row in corrections.read(project / "corrections.csv", CLASSES)]


def test_the_most_suspicious_are_relabelled_to_the_suggested_class(project: Path):
    line = review.main(["--accept-suggested", "2"])
    assert rows(project) == [("test/None/1.jpg", "relabel", "macro"), ("train/macro/2.jpg", "relabel", "None")]
    assert "2 added, 0 replaced, 0 already there; 2 rows in all" in line and "dvc repro" in line
    assert "score 0.01" in corrections.read(project / "corrections.csv")[0].note


def test_a_split_and_a_score_choose_among_the_suggestions(project: Path):
    review.main(["--accept-suggested", "5", "--split", "test", "--max-score", "0.1"])
    assert rows(project) == [("test/None/1.jpg", "relabel", "macro")]
    with pytest.raises(PipelineError, match="label_issues.csv: no suspect to accept with these options"):
        review.main(["--accept-suggested", "5", "--split", "val", "--max-score", "0.1"])


def test_the_page_s_rows_are_merged_and_replace_earlier_decisions(project: Path):
    review.main(["--accept-suggested", "2"])
    saved = project / "review-decisions.csv"
    saved.write_text(
        "path,sha256,action,label,note\n"
        f"test/None/1.jpg,{digest(1)},keep,,review page\n"  # the person disagrees with the suggestion
        f"val/None/4.jpg,{digest(4)},drop,,review page\n"
    )
    line = review.main(["--merge", str(saved)])
    assert rows(project) == [("test/None/1.jpg", "keep", ""), ("train/macro/2.jpg", "relabel", "None"),
                             ("val/None/4.jpg", "drop", "")]  # fmt: skip
    assert "1 added, 1 replaced, 0 already there; 3 rows in all" in line


def test_bad_rows_leave_corrections_csv_as_it_was(project: Path):
    review.main(["--accept-suggested", "1"])
    before = (project / "corrections.csv").read_bytes()
    saved = project / "review-decisions.csv"
    saved.write_text(f"path,sha256,action,label,note\nx.jpg,{digest(9)},relabel,chien,\n")
    with pytest.raises(PipelineError, match="review-decisions.csv: line 2: relabel to 'chien', which is not a class"):
        review.main(["--merge", str(saved)])
    assert (project / "corrections.csv").read_bytes() == before


def test_a_weak_judge_is_warned_of(project: Path, capsys: pytest.CaptureFixture):
    metrics = {"audit.judge_weak": True, "audit.judge_accuracy": 0.41, "audit.judge_chance": 0.36}
    (project / "metrics" / "audit.json").write_text(json.dumps(metrics))
    review.main(["--accept-suggested", "1"])
    assert "warning: the audit's judge is weak (right on 0.410 of the images out of fold" in capsys.readouterr().err


def test_the_command_is_one_error_line_or_its_usage(project: Path):
    (project / "reports" / "audit" / audit.LABEL_ISSUES).unlink()
    done = subprocess.run([sys.executable, "-m", "stages.review", "--accept-suggested", "3"], cwd=project,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"error: {Path('reports/audit') / audit.LABEL_ISSUES}: missing; run the audit stage first (dvc repro audit)"
    ]
    done = subprocess.run([sys.executable, "-m", "stages.review", "--merge", "x.csv", "--split", "test"], cwd=project,
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 2 and "use them with --accept-suggested" in done.stderr
