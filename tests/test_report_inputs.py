from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stages.lib import report_inputs
from stages.lib.errors import PipelineError


def write_logs(live_dir: Path, rows: dict[str, list[tuple[int, float]]]) -> None:
    for name, values in rows.items():
        folder, metric = name.split("/")
        path = live_dir / "plots" / "metrics" / folder / f"{metric}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("step\t" + metric + "\n" + "".join(f"{step}\t{value}\n" for step, value in values))


def test_curves_join_train_and_val_on_the_epoch(tmp_path: Path):
    write_logs(tmp_path, {
        "train/loss": [(1, 0.5), (0, 0.9)], "eval/loss": [(0, 1.0), (1, 0.7)],
        "train/accuracy": [(0, 0.6), (1, 0.8)], "eval/accuracy": [(0, 0.55), (1, 0.75)],
    })  # fmt: skip
    curves = report_inputs.read_curves(tmp_path, "transfer")
    assert curves["step"].tolist() == [0, 1]
    assert curves[["loss", "val_loss", "accuracy", "val_accuracy"]].values.tolist() == [
        [0.9, 1.0, 0.6, 0.55],
        [0.5, 0.7, 0.8, 0.75],
    ]


def test_a_missing_or_foreign_log_names_the_stage_that_writes_it(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"train/loss.tsv: missing; run the transfer stage first"):
        report_inputs.read_curves(tmp_path, "transfer")
    write_logs(tmp_path, {"train/loss": [(0, 0.9)]})
    (tmp_path / "plots" / "metrics" / "train" / "loss.tsv").write_text("epoch\tvalue\n0\t0.9\n")
    with pytest.raises(PipelineError, match=r"expected the columns step and loss.*dvc repro transfer"):
        report_inputs.read_curves(tmp_path, "transfer")


def test_predictions_keep_paths_that_read_like_missing_values_as_text(tmp_path: Path):
    path = tmp_path / "predictions.csv"
    pd.DataFrame({"path": ["None/a.jpg", "NA", "nan"], "label": [0, 1, 1]}).to_csv(path, index=False)
    assert report_inputs.read_predictions(path)["path"].tolist() == ["None/a.jpg", "NA", "nan"]


def test_models_scored_on_other_test_images_are_a_rerun_of_evaluate(tmp_path: Path):
    frames = {m: pd.DataFrame({"path": ["a.jpg", "b.jpg"], "label": [0, 1]}) for m in ("baseline", "transfer")}
    report_inputs.check_same_images(frames, tmp_path)  # the same images, in any order, pass
    frames["transfer"] = pd.DataFrame({"path": ["a.jpg", "c.jpg"], "label": [0, 1]})
    with pytest.raises(PipelineError, match=r"transfer/predictions.csv: not the test images of baseline's.*evaluate"):
        report_inputs.check_same_images(frames, tmp_path)
    frames["transfer"] = pd.DataFrame({"path": ["a.jpg", "a.jpg", "b.jpg"], "label": [0, 0, 1]})
    with pytest.raises(PipelineError, match=r"'a.jpg' is listed twice; re-run the evaluate stage"):
        report_inputs.check_same_images(frames, tmp_path)
