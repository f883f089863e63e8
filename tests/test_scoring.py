from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages import evaluate, finetune, transfer
from stages.lib import scoring
from tests.conftest import build_encoded_project, stage_args


def test_score_on_a_known_case():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probabilities = np.array([0.1, 0.4, 0.7, 0.6, 0.8, 0.3])
    out = scoring.score(labels, probabilities, 0.5, ["cats", "dogs"])
    # predicted: 0 0 1 1 1 0 -> tn 2, fp 1, fn 1, tp 2
    assert (out["confusion.tn"], out["confusion.fp"], out["confusion.fn"], out["confusion.tp"]) == (2, 1, 1, 2)
    assert out["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert out["precision"] == pytest.approx(2 / 3, abs=1e-6) and out["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert out["cats.precision"] == pytest.approx(2 / 3, abs=1e-6) and out["cats.recall"] == pytest.approx(
        2 / 3, abs=1e-6
    )
    # ROC AUC: the positive scores higher in 6 of the 9 (negative, positive) pairs.
    assert out["roc_auc"] == pytest.approx(6 / 9, abs=1e-6)
    assert out["log_loss"] > 0 and out["test_images"] == 6


def test_threshold_moves_the_decisions():
    labels = np.array([0, 1, 1])
    probabilities = np.array([0.3, 0.35, 0.9])
    assert scoring.score(labels, probabilities, 0.5, ["a", "b"])["recall"] == pytest.approx(0.5)
    assert scoring.score(labels, probabilities, 0.2, ["a", "b"])["recall"] == 1.0


def test_single_class_gives_none_for_undefined_scores():
    out = scoring.score(np.array([1, 1]), np.array([0.9, 0.2]), 0.5, ["a", "b"])
    assert out["roc_auc"] is None and out["average_precision"] is None and out["accuracy"] == 0.5


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_encoded_project(tmp_path_factory.mktemp("evaluate"), transfer={"epochs": 1}, finetune={"epochs": 1})
    transfer.main(stage_args(root, "transfer"))
    finetune.main(stage_args(root, "finetune") + ["--transfer-model", str(root / "models" / "transfer.keras")])
    # The baseline slot holds a copy of the transfer model: evaluate only needs three model files.
    (root / "models" / "baseline.keras").write_bytes((root / "models" / "transfer.keras").read_bytes())
    argv = ["--params", str(root / "params.yaml"), "--records", str(root / "data" / "tfrecords")]
    argv += ["--models", str(root / "models"), "--out", str(root / "evaluation")]
    view = evaluate.main(argv + ["--metrics", str(root / "metrics" / "eval.json")])
    assert view.read == set(evaluate.PARAMS)
    return root


def test_eval_metrics_are_flat_sorted_per_model(evaluated: Path):
    metrics = json.loads((evaluated / "metrics" / "eval.json").read_text())
    test_images = json.loads((evaluated / "metrics" / "data.json").read_text())["test.total"]
    assert list(metrics) == sorted(metrics)
    for model in evaluate.MODELS:
        for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "log_loss"):
            assert f"{model}.{key}" in metrics
        assert metrics[f"{model}.test_images"] == test_images == 2
        assert sum(metrics[f"{model}.confusion.{c}"] for c in ("tn", "fp", "fn", "tp")) == test_images
    assert metrics["baseline.log_loss"] == metrics["transfer.log_loss"]  # same model, same numbers


def test_predictions_csv_and_plot_data(evaluated: Path, tmp_path: Path):
    test = pd.read_csv(evaluated / "data" / "splits" / "test.csv")
    for model in evaluate.MODELS:
        frame = pd.read_csv(evaluated / "evaluation" / model / "predictions.csv")
        assert list(frame.columns) == scoring.PREDICTION_COLUMNS
        assert sorted(frame["path"]) == sorted(test["path"])
        assert frame["probability"].between(0, 1).all()
        assert (frame["predicted"] == (frame["probability"] >= 0.5)).all()
        plots = evaluated / "evaluation" / model / "plots" / "sklearn"
        roc = json.loads((plots / "roc.json").read_text())["roc"]
        assert roc[0]["fpr"] == 0 and roc[-1]["tpr"] == 1
        assert len(json.loads((plots / "confusion_matrix.json").read_text())) == len(test)
        assert (plots / "precision_recall.json").exists()


def test_missing_model_is_a_clear_error(evaluated: Path, tmp_path: Path):
    argv = ["--params", str(evaluated / "params.yaml"), "--records", str(evaluated / "data" / "tfrecords")]
    argv += ["--models", str(tmp_path), "--out", str(tmp_path / "evaluation"), "--metrics", str(tmp_path / "e.json")]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.run(lambda: evaluate.main(argv))
    assert "baseline.keras: missing; run the baseline stage first" in str(exit_info.value.code)
    assert not (tmp_path / "evaluation").exists() and not (tmp_path / "e.json").exists()
