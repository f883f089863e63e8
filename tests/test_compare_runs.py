"""scripts/compare_runs.py: a model's change in test accuracy between two runs, image by image."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.lib import reference
from tests.conftest import ROOT

SPEC = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(compare_runs)


def predictions(wrong: range, images: int = 100, relabel: range = range(0)) -> pd.DataFrame:
    """Two-class predictions of `images` test images, right on all but `wrong`; `relabel` has its labels flipped."""
    labels = np.arange(images) % 2
    labels = np.where(np.isin(np.arange(images), list(relabel)), 1 - labels, labels)
    truth = np.arange(images) % 2  # what the model predicts when right on the original label
    predicted = np.where(np.isin(np.arange(images), list(wrong)), 1 - truth, truth)
    return pd.DataFrame({"path": [f"validation/x/{i}.jpg" for i in range(images)], "label": labels,
                         "predicted": predicted})  # fmt: skip


def test_a_gain_of_seven_images_all_one_way_is_outside_the_noise_and_three_is_not():
    line = compare_runs.compare("finetune", predictions(range(10)), predictions(range(3)), ("HEAD~1", "workspace"))
    assert line == (
        "finetune: accuracy 0.9000 in HEAD~1, 0.9700 in workspace (+0.0700) on the same 100 test images; right only "
        "in workspace: 7, only in HEAD~1: 0; McNemar's exact test p = 0.0156: outside the noise"
    )
    line = compare_runs.compare("finetune", predictions(range(10)), predictions(range(7)), ("a", "b"))
    assert "(+0.0300)" in line and "right only in b: 3, only in a: 0" in line and "p = 0.25: inside the noise" in line


def test_each_run_is_scored_on_its_own_labels():
    # Two images relabelled between the runs, the model's answers unchanged: both become right.
    before = predictions(range(0, 2))
    after = predictions(range(0), relabel=range(0, 2))
    after["predicted"] = before["predicted"]
    line = compare_runs.compare("transfer", before, after, ("a", "b"))
    assert "0.9800 in a, 1.0000 in b (+0.0200) on the same 100 test images (2 of them relabelled in between)" in line


def test_runs_on_other_test_images_are_not_compared_image_by_image():
    line = compare_runs.compare("baseline", predictions(range(0), images=100), predictions(range(0), images=90),
                                ("a", "b"))  # fmt: skip
    assert line.startswith("baseline: scored on other test images (10 only in a, 0 only in b): not a paired")


def sh(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)


def test_reads_both_runs_through_dvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    for model in reference.MODELS:
        (tmp_path / "evaluation" / model).mkdir(parents=True)
        predictions(range(12)).to_csv(tmp_path / "evaluation" / model / "predictions.csv", index=False)
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@localhost")
    sh("git", "init", "-q", cwd=tmp_path)
    sh("dvc", "init", "-q", cwd=tmp_path)
    sh("dvc", "add", "-q", "evaluation", cwd=tmp_path)  # a DVC output, as evaluate's is: in the cache, not in git
    sh("git", "add", "-A", cwd=tmp_path)
    sh(*git, "commit", "-qm", "run 1", cwd=tmp_path)
    predictions(range(2)).to_csv(tmp_path / "evaluation" / "finetune" / "predictions.csv", index=False)
    monkeypatch.chdir(tmp_path)
    lines = compare_runs.main(["HEAD"])
    assert [line.split(":")[0] for line in lines] == list(reference.MODELS)
    assert "0.8800 in HEAD, 0.9800 in workspace (+0.1000)" in lines[-1] and lines[-1].endswith("outside the noise")
    assert "(+0.0000)" in lines[0] and capsys.readouterr().out.splitlines() == lines
    with pytest.raises(SystemExit) as exit_info:
        compare_runs.run(lambda: compare_runs.main(["no-such-rev"]))
    assert str(exit_info.value.code) == (
        "error: no-such-rev: evaluation/baseline/predictions.csv: unknown Git revision 'no-such-rev'"
    )
