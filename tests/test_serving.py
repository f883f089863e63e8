"""The export stage on a tiny trained model (32 px): SavedModel and TFLite files, parity with Keras, errors.

Tolerances on probabilities (max |export - Keras| over the test split):
- SavedModel and float32 TFLite: 1e-4, what the stage itself enforces. Both compute in float32 like Keras;
  measured 1.6e-07 and 1.3e-06 on the test split, up to 1.6e-05 on noise images (TFLite fuses ops).
- dynamic-range TFLite: 0.25. Its int8 weights and on-the-fly int8 activations are not float32, and this
  tiny model's base has random weights (no ImageNet weights offline), which amplify quantization noise in
  a way trained weights do not: measured 0.076 on the 2 test images, 0.19-0.29 (mean 0.06) on batches of
  64 noise images. So the quantized model is also held to the Keras model by rank: over 64 noise images its
  probabilities correlate with Keras' at r > 0.8 (measured 0.89-0.93), which a broken export (active
  augmentation, wrong preprocessing, swapped outputs) would not.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from stages import export
from stages.lib import chance, saving, serving
from tests.conftest import ROOT, build_trained_project

pytestmark = pytest.mark.slow  # trains the tiny model with the real stages

IMAGE_SIZE = 32  # build_encoded_project's size
FLOAT_TOLERANCE = 1e-4
DYNAMIC_RANGE_TOLERANCE = 0.25


MODELS = ("baseline", "transfer", "finetune")


def export_args(root: Path) -> list[str]:
    return [
        "--params", str(root / "params.yaml"),
        *(arg for m in MODELS for arg in ("--model", str(root / "models" / f"{m}.keras"))),
        "--training-metrics", str(root / "metrics"),
        "--records", str(root / "data" / "tfrecords"),
        "--out", str(root / "models" / "export"),
        "--metrics", str(root / "metrics" / "export.json"),
    ]  # fmt: skip


EXPORT_PARAMS = {"export.model", "export.flag_margin", "export.min_agreement", "evaluate.tta"}


def with_val_scores(root: Path, **accuracies: float) -> None:
    """Set the val accuracy each training stage recorded (metrics/<stage>.json), which `export.model: best` reads."""
    for model, accuracy in accuracies.items():
        path = root / "metrics" / f"{model}.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"val.accuracy": accuracy}))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_trained_project(tmp_path_factory.mktemp("export"))
    # The baseline slot holds a copy of the transfer model: export chooses among three model files.
    (root / "models" / "baseline.keras").write_bytes((root / "models" / "transfer.keras").read_bytes())
    (root / "metrics" / "baseline.json").write_bytes((root / "metrics" / "transfer.json").read_bytes())
    with_val_scores(root, baseline=0.5, transfer=0.75, finetune=0.875)  # finetune the best: the tests' model
    view = export.main(export_args(root))
    assert view.read == EXPORT_PARAMS
    assert metrics_of(root)["model"] == "finetune"
    return root


@pytest.fixture(scope="module")
def keras_model(exported: Path) -> keras.Model:
    return saving.load_model(exported / "models" / "finetune.keras")


def noise_images(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def metrics_of(root: Path) -> dict:
    return json.loads((root / "metrics" / "export.json").read_text())


def test_every_format_is_written_and_the_quantized_one_is_smaller(exported: Path):
    out = exported / "models" / "export"
    f32, dynamic = out / "model_float32.tflite", out / "model_dynamic_range.tflite"
    assert (out / "saved_model" / "1" / "saved_model.pb").stat().st_size > 0
    assert f32.stat().st_size > 0 and 0 < dynamic.stat().st_size < f32.stat().st_size / 3  # int8 weights
    assert (out / "labels.txt").read_text() == "cats\ndogs\n"
    assert not list(exported.glob("models/.export*"))  # the temporary build folder was renamed into place
    metrics = metrics_of(exported)
    assert metrics["tflite_float32.bytes"] == f32.stat().st_size
    assert metrics["tflite_dynamic_range.bytes"] == dynamic.stat().st_size
    assert metrics["saved_model.bytes"] > 0


def test_metrics_are_flat_sorted_and_within_tolerance(exported: Path):
    metrics = metrics_of(exported)
    assert list(metrics) == sorted(metrics)
    assert metrics["test_images"] == 2  # build_encoded_project's test split
    assert metrics["saved_model.max_abs_diff"] <= FLOAT_TOLERANCE
    assert metrics["tflite_float32.max_abs_diff"] <= FLOAT_TOLERANCE
    assert 0 < metrics["tflite_dynamic_range.max_abs_diff"] <= DYNAMIC_RANGE_TOLERANCE  # > 0: it is quantized
    assert metrics["min_agreement"] == 0.95
    for name in ("saved_model", "tflite_float32", "tflite_dynamic_range"):
        assert 0 <= metrics[f"{name}.agreement"] <= 1
        assert metrics[f"{name}.flagged"] == int(metrics[f"{name}.agreement"] < 0.95)
    assert metrics["saved_model.agreement"] == metrics["tflite_float32.agreement"] == 1.0


def test_the_exported_model_had_augmentation_to_switch_off(keras_model: keras.Model):
    augmentation = keras_model.get_layer("augmentation")
    assert {type(layer).__name__ for layer in augmentation.layers} == {"RandomFlip", "RandomRotation"}


def test_saved_model_reloads_and_its_signature_serves_the_same_probabilities(exported, keras_model):
    loaded = tf.saved_model.load(str(exported / "models" / "export" / "saved_model" / "1"))
    signature = loaded.signatures["serving_default"]
    images = noise_images(8)
    outputs = signature(image=tf.constant(images))
    assert set(outputs) == {"logit", "probability"} and outputs["probability"].shape == (8, 1)
    expected = serving.keras_predictor(keras_model)(images)[:, 1]  # the probability of class 1
    probabilities = outputs["probability"].numpy().reshape(-1)
    assert np.abs(probabilities - expected).max() <= FLOAT_TOLERANCE
    assert expected.std() > 0.05  # the images get different probabilities, so the comparison means something
    # Inference graph: the same answer twice, and no random op of the augmentation layers anywhere in it.
    again = signature(image=tf.constant(images))["probability"].numpy().reshape(-1)
    assert (again == probabilities).all()
    graph = signature.graph.as_graph_def()
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    assert not {op for op in ops if "Random" in op or "ImageProjectiveTransform" in op}


def test_tflite_models_agree_with_keras_on_more_images(exported, keras_model):
    out = exported / "models" / "export"
    images = noise_images(64)
    expected = serving.keras_predictor(keras_model)(images)
    f32 = serving.tflite_predictor((out / "model_float32.tflite").read_bytes())
    assert np.abs(f32(images) - expected).max() <= FLOAT_TOLERANCE
    assert np.abs(f32(images[:1]) - expected[:1]).max() <= FLOAT_TOLERANCE  # another batch size
    dynamic = serving.tflite_predictor((out / "model_dynamic_range.tflite").read_bytes())(images)
    assert np.abs(dynamic - expected).mean() < 0.1
    assert np.corrcoef(dynamic[:, 1], expected[:, 1])[0, 1] > 0.8


def run_cli(argv: list[str]) -> str:
    """Run the stage as its __main__ does; return the one-line error, or '' on success."""
    try:
        export.run(lambda: export.main(argv))
    except SystemExit as exc:
        return str(exc.code)
    return ""


def test_missing_input_is_one_line_naming_it(tmp_path: Path):
    argv = export_args(tmp_path)
    argv[argv.index("--params") + 1] = str(ROOT / "params.yaml")
    error = run_cli(argv)
    metrics = tmp_path / "metrics" / "baseline.json"
    assert error == f"error: {metrics}: missing; run the baseline stage first (dvc repro baseline)"
    assert not (tmp_path / "models" / "export").exists() and not (tmp_path / "metrics" / "export.json").exists()


def test_best_is_the_highest_val_accuracy_and_export_writes_it_with_its_reason(exported: Path, tmp_path: Path, capsys):
    """Seen on the landed main: a user's run exported the fine-tuned model at 0.303 while the baseline had 0.966,
    without a word."""
    root = tmp_path / "best"
    shutil.copytree(exported, root, ignore=shutil.ignore_patterns("export"))
    with_val_scores(root, baseline=0.95, transfer=0.125, finetune=0.25)
    transfer = root / "metrics" / "transfer.json"  # as a transfer stage with model.weights: none records it
    transfer.write_text(json.dumps(json.loads(transfer.read_text()) | {"weights.sha256": "none"}))
    capsys.readouterr()
    export.main(export_args(root))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "export: the model is baseline: export.model: best, the highest val accuracy (baseline 0.9500, transfer "
        "0.1250, finetune 0.2500)"
    )
    assert out[1].startswith("export: warning: transfer: val accuracy 0.1250 is no better than always answering")
    assert out[1].endswith("; likely cause: " + chance.RANDOM_WEIGHTS)  # known from the transfer stage's record
    metrics = metrics_of(root)
    assert metrics["model"] == "baseline" and set(metrics) >= {"flagged.transfer", "flagged.finetune"}
    exported_model = root / "models" / "export" / "model.keras"
    assert exported_model.read_bytes() == (root / "models" / "baseline.keras").read_bytes()
    assert (root / "models" / "export" / "labels.txt").read_text() == "cats\ndogs\n"


def test_a_stage_s_name_exports_that_model_whatever_its_score(exported: Path, tmp_path: Path, capsys):
    root = tmp_path / "named"
    shutil.copytree(exported, root, ignore=shutil.ignore_patterns("export"))
    with_val_scores(root, baseline=0.95, transfer=0.125, finetune=0.25)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["export"]["model"] = "finetune"
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    export.main(export_args(root))
    assert capsys.readouterr().out.startswith("export: the model is finetune: export.model: finetune (val accuracy")
    assert metrics_of(root)["model"] == "finetune"


def test_a_float_format_past_the_tolerance_stops_the_stage():
    serving.check_float_parity({"saved_model": 1e-7, "tflite_float32": 1e-6, "tflite_dynamic_range": 0.3})
    with pytest.raises(serving.ExportError, match=r"tflite_float32 0\.002; allowed 0\.0001"):
        serving.check_float_parity({"saved_model": 1e-7, "tflite_float32": 2e-3, "tflite_dynamic_range": 0.0})
    with pytest.raises(serving.ExportError, match="saved_model nan"):
        serving.check_float_parity({"saved_model": float("nan"), "tflite_float32": 0.0, "tflite_dynamic_range": 0})


def test_a_mixed_precision_model_is_exported_as_the_same_weights_in_float32():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        inputs = keras.Input((8, 8, 3))
        mixed = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inputs)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy = serving.in_float32(mixed)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    assert all((a == b).all() for a, b in zip(mixed.get_weights(), copy.get_weights()))
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    assert copy(images).dtype == "float32"
    assert np.allclose(copy(images), np.asarray(mixed(images), dtype="float32"), rtol=0.02, atol=0.05)
    model = serving.in_float32(copy)
    assert model is copy  # a float32 model is exported as it is


def test_an_export_with_test_time_augmentation_carries_it_into_every_format(exported: Path, tmp_path: Path):
    raw = yaml.safe_load((exported / "params.yaml").read_text())
    raw["evaluate"]["tta"] = "flip"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    argv = export_args(exported)
    argv[argv.index("--params") + 1] = str(tmp_path / "params.yaml")
    argv[argv.index("--out") + 1] = str(tmp_path / "export")
    argv[argv.index("--metrics") + 1] = str(tmp_path / "export.json")
    view = export.main(argv)  # inside: every format is checked against the wrapped Keras model
    assert view.read == EXPORT_PARAMS
    assert json.loads((tmp_path / "export.json").read_text())["tta"] == "flip"
    images = noise_images(3)
    model = saving.load_model(exported / "models" / "finetune.keras")
    wrapped = serving.keras_predictor(saving.with_test_time_augmentation(model, "flip"))(images)
    saved = serving.saved_model_predictor(tmp_path / "export" / serving.SAVED_MODEL_DIR)(images)
    tflite = serving.tflite_predictor((tmp_path / "export" / "model_float32.tflite").read_bytes())(images)
    assert np.abs(saved - wrapped).max() <= FLOAT_TOLERANCE and np.abs(tflite - wrapped).max() <= FLOAT_TOLERANCE
    plain = serving.keras_predictor(model)(images)
    mirrored = serving.keras_predictor(model)(images[:, :, ::-1, :])
    assert np.allclose(saved, (plain + mirrored) / 2, atol=1e-4)
