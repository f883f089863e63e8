from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import evaluate, finetune, transfer
from stages.lib import heads, intervals, scoring
from tests.conftest import ROOT, build_encoded_project, dvc_args, stage_args


def binary(p1: list[float]) -> np.ndarray:
    p1 = np.asarray(p1, dtype=np.float64)
    return np.stack([1 - p1, p1], axis=1)


def test_score_on_a_known_case():
    labels = np.array([0, 0, 0, 1, 1, 1])
    out = scoring.score(labels, binary([0.1, 0.4, 0.7, 0.6, 0.8, 0.3]), 0.5, ["cats", "dogs"], top_k=5)
    # predicted: 0 0 1 1 1 0 -> tn 2, fp 1, fn 1, tp 2
    assert (out["confusion.tn"], out["confusion.fp"], out["confusion.fn"], out["confusion.tp"]) == (2, 1, 1, 2)
    assert out["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert out["precision"] == pytest.approx(2 / 3, abs=1e-6) and out["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert out["class.cats.precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert out["class.dogs.f1"] == out["f1"] and out["macro.f1"] == pytest.approx(2 / 3, abs=1e-6)
    # ROC AUC: the positive scores higher in 6 of the 9 (negative, positive) pairs.
    assert out["roc_auc"] == pytest.approx(6 / 9, abs=1e-6)
    assert out["log_loss"] > 0 and out["test_images"] == 6 and "top_k_accuracy" not in out


def test_binary_keys_are_the_headline_keys_of_older_commits_and_each_class_once():
    out = scoring.score(np.array([0, 1]), binary([0.2, 0.9]), 0.5, ["cats", "dogs"], top_k=5)
    headline = {"test_images", "accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "log_loss"}
    headline |= {f"confusion.{c}" for c in ("tn", "fp", "fn", "tp")}
    averages = {f"{a}.{k}" for a in ("macro", "weighted") for k in ("precision", "recall", "f1")}
    per_class = {f"class.{c}.{k}" for c in ("cats", "dogs") for k in ("precision", "recall", "f1")}
    assert set(out) == headline | averages | per_class  # no `cats.precision` beside `class.cats.precision`


@pytest.mark.parametrize(
    "names",
    [["macro", "weighted"], ["total", "macro", "precision"], ["class", "a.b", "a"], ["None", "NA", "f1", "x|y"]],
    ids=["aggregates", "three", "dots", "four"],
)
def test_no_class_name_collides_with_another_key(names):
    """Seen on the landed main: classes `macro` and `weighted` overwrote the averages (`macro.precision` 0.0 for
    0.25), and two classes wrote each class's scores three times."""
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(3)
    labels = np.arange(40) % len(names)
    probabilities = rng.dirichlet(np.ones(len(names)), size=40)
    out = scoring.score(labels, probabilities, 0.5, names, top_k=5)
    predicted = heads.predicted(probabilities, 0.5)
    p, r, f, _ = precision_recall_fscore_support(labels, predicted, labels=range(len(names)), zero_division=0)
    for index, name in enumerate(names):
        assert (out[f"class.{name}.precision"], out[f"class.{name}.recall"], out[f"class.{name}.f1"]) == pytest.approx(
            (p[index], r[index], f[index]), abs=1e-6
        )
    macro = precision_recall_fscore_support(labels, predicted, average="macro", zero_division=0)
    assert out["macro.precision"] == pytest.approx(macro[0], abs=1e-6)
    assert len(out) == len(set(out)) and sum(key.startswith("class.") for key in out) == 3 * len(names)


def test_threshold_moves_the_decisions():
    labels = np.array([0, 1, 1])
    probabilities = binary([0.3, 0.35, 0.9])
    assert scoring.score(labels, probabilities, 0.5, ["a", "b"], 5)["recall"] == pytest.approx(0.5)
    assert scoring.score(labels, probabilities, 0.2, ["a", "b"], 5)["recall"] == 1.0


def test_single_class_gives_none_for_undefined_scores():
    out = scoring.score(np.array([1, 1]), binary([0.9, 0.2]), 0.5, ["a", "b"], 5)
    assert out["roc_auc"] is None and out["average_precision"] is None and out["accuracy"] == 0.5


def test_three_classes_on_a_known_case():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]]
    )  # argmax: 0 1 1 1 2 0 -> right on 4 of 6
    out = scoring.score(labels, probabilities, 0.5, ["a", "b", "c"], top_k=5)
    assert out["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert out["class.a.recall"] == 0.5 and out["class.b.recall"] == 1.0 and out["class.c.recall"] == 0.5
    assert out["class.b.precision"] == pytest.approx(2 / 3, abs=1e-6) and out["class.c.precision"] == 1.0
    assert out["macro.recall"] == pytest.approx((0.5 + 1 + 0.5) / 3, abs=1e-6)
    assert 0.5 < out["roc_auc"] <= 1 and out["log_loss"] > 0
    assert not {"f1", "precision", "confusion.tp", "average_precision"} & set(out)  # two-class keys only


def test_top_k_accuracy_above_five_classes():
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 6
    logits = rng.normal(size=(60, 6))
    logits[np.arange(60), labels] += 1.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    out = scoring.score(labels, probabilities, 0.5, [f"c{i}" for i in range(6)], top_k=3)
    top3 = (np.argsort(-probabilities, axis=1)[:, :3] == labels[:, None]).any(axis=1).mean()
    assert out["top_k"] == 3 and out["top_k_accuracy"] == pytest.approx(top3, abs=1e-6)
    assert out["top_k_accuracy"] >= out["accuracy"]


def test_score_intervals_of_two_classes_bracket_the_scores_they_belong_to():
    rng = np.random.default_rng(4)
    labels = np.arange(200) % 2
    probabilities = binary(np.clip(labels * 0.6 + rng.normal(0.2, 0.25, 200), 0, 1))
    out = scoring.score(labels, probabilities, 0.5, ["cats", "dogs"], top_k=5)
    ends = scoring.score_intervals(labels, probabilities, 0.5, ["cats", "dogs"], 5, resamples=1000, seed=0)
    assert set(ends) == {f"{key}.{end}" for key in ("accuracy", "f1", "macro.f1") for end in ("low", "high")}
    right = round(out["accuracy"] * 200)
    assert (ends["accuracy.low"], ends["accuracy.high"]) == pytest.approx(intervals.wilson(right, 200), abs=1e-6)
    for key in ("accuracy", "f1", "macro.f1"):
        assert ends[f"{key}.low"] < out[key] < ends[f"{key}.high"]
        assert 0.03 < ends[f"{key}.high"] - ends[f"{key}.low"] < 0.2  # 200 images: about +-0.05
    assert ends["f1.low"] != ends["macro.f1.low"]  # class 1's is not the average's
    assert scoring.score_intervals(labels, probabilities, 0.5, ["cats", "dogs"], 5, 1000, seed=0) == ends  # seeded
    headline = scoring.headline(out | ends)
    assert list(headline) == [*scoring.HEADLINE, "ci"]
    assert headline["ci"] == round((ends["accuracy.high"] - ends["accuracy.low"]) / 2, 3)


def test_score_intervals_above_five_classes_cover_top_k_accuracy():
    rng = np.random.default_rng(1)
    labels = np.arange(120) % 6
    logits = rng.normal(size=(120, 6))
    logits[np.arange(120), labels] += 1.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = [f"c{i}" for i in range(6)]
    out = scoring.score(labels, probabilities, 0.5, names, top_k=3)
    ends = scoring.score_intervals(labels, probabilities, 0.5, names, 3, resamples=1000, seed=0)
    assert set(ends) == {
        f"{key}.{end}" for key in ("accuracy", "top_k_accuracy", "macro.f1") for end in ("low", "high")
    }
    top3 = round(out["top_k_accuracy"] * 120)
    assert (ends["top_k_accuracy.low"], ends["top_k_accuracy.high"]) == pytest.approx(intervals.wilson(top3, 120))


def test_predictions_table_has_a_probability_per_class():
    frame = scoring.predictions_frame(["x", "y"], np.array([0, 2]), np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]),
                                      0.5, ["a", "b", "c"])  # fmt: skip
    assert list(frame.columns) == ["path", "label", "predicted", "confidence", "p_a", "p_b", "p_c"]
    assert frame["predicted"].tolist() == [1, 2] and frame["confidence"].tolist() == [0.5, 0.8]


def declared_plot_files(model: str) -> set[str]:
    """The files under evaluation/<model>/ that dvc.yaml declares as plots."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    declared = {path for plot in plots for name, spec in plot.items() for path in [name, *(spec.get("y") or {})]}
    prefix = f"evaluation/{model}/"
    return {path.removeprefix(prefix) for path in declared if path.startswith(prefix)}


@pytest.mark.parametrize("classes", [2, 3, 12])
def test_every_declared_plot_is_written_for_any_number_of_classes(tmp_path: Path, classes: int):
    """Seen on the landed main: with more than two classes the declared ROC and precision-recall files were not
    written, and `dvc plots show` warned `DVC failed to load some plots` on every run."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(classes)
    labels = np.arange(60) % classes
    probabilities = rng.dirichlet(np.ones(classes), size=60)
    probabilities[np.arange(60), labels] += 0.5
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    scoring.write_plot_data(tmp_path, labels, probabilities, 0.5, [f"c{i}" for i in range(classes)])
    written = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "plots").rglob("*.json")}
    assert declared_plot_files("finetune") == written
    roc = pd.DataFrame(json.loads((tmp_path / "plots" / "sklearn" / "roc.json").read_text())["roc"])
    truth, scores = scoring.ranking(labels, probabilities)
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)
    if classes > 2:  # one-vs-rest, micro-averaged: every (image, class) pair ranked by that class's probability
        assert roc_auc_score(truth, scores) == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr",
                                                                           average="micro"), abs=1e-9)  # fmt: skip


def evaluate_models() -> list[str]:
    """The models evaluate scores, as dvc.yaml passes them."""
    args = dvc_args("evaluate")
    return [Path(value).stem for option, value in zip(args[::2], args[1::2]) if option == "--model"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_encoded_project(tmp_path_factory.mktemp("evaluate"), transfer={"epochs": 1}, finetune={"epochs": 1})
    transfer.main(stage_args(root, "transfer"))
    finetune.main(stage_args(root, "finetune") + ["--transfer-model", str(root / "models" / "transfer.keras")])
    # The baseline slot holds a copy of the transfer model: evaluate only needs three model files.
    (root / "models" / "baseline.keras").write_bytes((root / "models" / "transfer.keras").read_bytes())
    argv = ["--params", str(root / "params.yaml"), "--records", str(root / "data" / "tfrecords")]
    argv += [arg for m in evaluate_models() for arg in ("--model", str(root / "models" / f"{m}.keras"))]
    argv += ["--out", str(root / "evaluation")]
    view = evaluate.main(
        argv + ["--metrics", str(root / "metrics" / "test"), "--details", str(root / "metrics" / "eval.json")]
    )
    assert view.read == set(evaluate.PARAMS)
    return root


def test_eval_metrics_are_flat_sorted_per_model(evaluated: Path):
    metrics = json.loads((evaluated / "metrics" / "eval.json").read_text())
    test_images = json.loads((evaluated / "metrics" / "data.json").read_text())["test.total"]
    assert list(metrics) == sorted(metrics)
    assert (
        metrics["bootstrap_resamples"]
        == yaml.safe_load((evaluated / "params.yaml").read_text())["evaluate"]["bootstrap_resamples"]
    )  # what the report quotes beside F1's interval
    for model in evaluate_models():
        for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "log_loss"):
            assert f"{model}.{key}" in metrics
        assert metrics[f"{model}.test_images"] == test_images >= 2
        assert sum(metrics[f"{model}.confusion.{c}"] for c in ("tn", "fp", "fn", "tp")) == test_images
    assert metrics["baseline.log_loss"] == metrics["transfer.log_loss"]  # same model, same numbers
    for model in evaluate_models():  # the headline, one row per model in `dvc metrics show`
        headline = json.loads((evaluated / "metrics" / "test" / f"{model}.json").read_text())
        ends = (metrics[f"{model}.accuracy.low"], metrics[f"{model}.accuracy.high"])
        right = round(metrics[f"{model}.accuracy"] * test_images)
        assert ends == pytest.approx(intervals.wilson(right, test_images), abs=1e-6)
        ci = round((ends[1] - ends[0]) / 2, 3)
        assert headline == {
            key: metrics[f"{model}.{key}"] for key in ("accuracy", "macro.f1", "roc_auc", "log_loss")
        } | {"ci": ci}
        assert 0 <= metrics[f"{model}.macro.f1.low"] <= metrics[f"{model}.macro.f1.high"] <= 1  # 2 images: wide


def test_predictions_csv_and_plot_data(evaluated: Path, tmp_path: Path):
    test = pd.read_csv(evaluated / "data" / "splits" / "test.csv")
    for model in evaluate_models():
        frame = pd.read_csv(evaluated / "evaluation" / model / "predictions.csv")
        assert list(frame.columns) == ["path", "label", "predicted", "confidence", "p_cats", "p_dogs"]
        assert sorted(frame["path"]) == sorted(test["path"])
        assert frame["p_dogs"].between(0, 1).all() and np.allclose(frame["p_cats"] + frame["p_dogs"], 1)
        assert (frame["predicted"] == (frame["p_dogs"] >= 0.5)).all()
        plots = evaluated / "evaluation" / model / "plots" / "sklearn"
        roc = json.loads((plots / "roc.json").read_text())["roc"]
        assert roc[0]["fpr"] == 0 and roc[-1]["tpr"] == 1
        assert len(json.loads((plots / "confusion_matrix.json").read_text())) == len(test)
        assert (plots / "precision_recall.json").exists()


def test_missing_model_is_a_clear_error(evaluated: Path, tmp_path: Path):
    argv = ["--params", str(evaluated / "params.yaml"), "--records", str(evaluated / "data" / "tfrecords")]
    argv += [arg for m in evaluate_models() for arg in ("--model", str(tmp_path / f"{m}.keras"))]
    argv += [
        "--out",
        str(tmp_path / "evaluation"),
        "--metrics",
        str(tmp_path / "test"),
        "--details",
        str(tmp_path / "e.json"),
    ]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.run(lambda: evaluate.main(argv))
    assert "baseline.keras: missing; run the baseline stage first" in str(exit_info.value.code)
    assert not (tmp_path / "evaluation").exists() and not (tmp_path / "e.json").exists()


def test_test_time_augmentation_scores_each_image_with_its_mirror(evaluated: Path, tmp_path: Path):
    params_yaml = tmp_path / "params.yaml"
    raw = yaml.safe_load((evaluated / "params.yaml").read_text())
    raw["evaluate"]["tta"] = "flip"
    params_yaml.write_text(yaml.safe_dump(raw))
    argv = ["--params", str(params_yaml), "--records", str(evaluated / "data" / "tfrecords")]
    argv += [arg for m in evaluate_models() for arg in ("--model", str(evaluated / "models" / f"{m}.keras"))]
    evaluate.main(argv + ["--out", str(tmp_path / "evaluation"), "--metrics", str(tmp_path / "test"),
                          "--details", str(tmp_path / "eval.json")])  # fmt: skip
    plain = json.loads((evaluated / "metrics" / "eval.json").read_text())
    flipped = json.loads((tmp_path / "eval.json").read_text())
    assert (plain["tta"], flipped["tta"]) == ("none", "flip")
    before = pd.read_csv(evaluated / "evaluation" / "finetune" / "predictions.csv")
    after = pd.read_csv(tmp_path / "evaluation" / "finetune" / "predictions.csv")
    assert list(before["path"]) == list(after["path"])
    assert not np.allclose(before["confidence"], after["confidence"])  # the mirror images changed the scores
