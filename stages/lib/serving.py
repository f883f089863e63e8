"""Serving exports of a trained model: a SavedModel for TF Serving and TFLite (float32, dynamic range).

Every export has one signature, `serving_default`: input `image` (float32 RGB in [0, 255], N x S x S x 3,
the Keras model's own input). Outputs, for two classes: `logit` and `probability` (sigmoid of the logit; the
probability of class index 1, whose name is on line 2 of labels.txt), each N x 1; for more classes: `logits`
and `probabilities` (softmax), each N x classes, in the order of labels.txt.

The model is traced with `training=False`. Keras 3.15's `model.export(path, format="tf_saved_model")`
traces `model.__call__` without it, and the random preprocessing layers default to training=True: the
augmentation of the transfer and finetune models (random flip and rotation) would then run in the served
graph, and the TFLite converter refuses its ops (StatelessRandomUniformV2, ImageProjectiveTransformV3)
without TF Select.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from stages.lib import heads, runtime
from stages.lib.cli import PipelineError

SIGNATURE = "serving_default"
INPUT = "image"
SAVED_MODEL_DIR = "saved_model/1"  # TF Serving's layout: --model_base_path=<export>/saved_model, version 1
LABELS_FILE = "labels.txt"
KERAS_FILE = "model.keras"  # the chosen model itself, for predict and for Keras users
TFLITE_FILES = {
    "tflite_float32": "model_float32.tflite",
    "tflite_dynamic_range": "model_dynamic_range.tflite",  # int8 weights, activations quantized on the fly
}
FORMATS = ("saved_model", *TFLITE_FILES)
# Formats that compute in float32 like the Keras model: anything past this on a probability is a broken
# export (a different graph or preprocessing), not rounding. Measured on the tiny test model: 2e-7
# (SavedModel), 1e-6 to 2e-5 (TFLite, which fuses ops).
FLOAT_FORMATS = ("saved_model", "tflite_float32")
FLOAT_TOLERANCE = 1e-4

Predictor = Callable[[np.ndarray], np.ndarray]  # images N x S x S x 3 -> class probabilities, N x classes


class ExportError(PipelineError):
    pass


def keras_predictor(model: keras.Model) -> Predictor:
    return lambda images: heads.probabilities(model(images, training=False).numpy())


def _outputs(logits: tf.Tensor) -> dict[str, tf.Tensor]:
    """The signature's outputs (module docstring) from the model's logits."""
    if logits.shape[-1] == 1:
        return {"logit": logits, "probability": tf.sigmoid(logits)}
    return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


def _class_probabilities(outputs) -> np.ndarray:
    """N x classes probabilities from a signature's outputs, whichever head the model has."""
    if "probability" in outputs:
        positive = np.asarray(outputs["probability"], np.float64).reshape(-1)
        return np.stack([1 - positive, positive], axis=1)
    return np.asarray(outputs["probabilities"], np.float64)


def export_saved_model(model: keras.Model, path: Path) -> None:
    size = model.input_shape[1]

    def serve(image):
        return _outputs(model(image, training=False))  # augmentation off, Dropout off: see the module docstring

    archive = keras.export.ExportArchive()
    # No archive.track(model): the endpoint's variables are tracked anyway, and track() stores every weight a
    # second time (Keras' variable list besides the endpoint's tf.Variables), doubling the SavedModel; it
    # is needed only for lookup-table layers, which these models do not have.
    # The only endpoint of an archive also becomes its `serving_default` signature.
    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, INPUT)])
    archive.write_out(str(path), verbose=False)


def convert_tflite(saved_model: Path, quantize: bool) -> bytes:
    """TFLite flatbuffer of the SavedModel's serving signature, TFLite builtin ops only.

    No TF Select fallback: a graph that needs full TensorFlow ops (random augmentation would) fails here
    instead of producing a model most TFLite runtimes cannot run.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:  # DEFAULT without a representative dataset = dynamic-range quantization
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return converter.convert()
    except Exception as exc:  # noqa: BLE001  (ConverterError lives in a private module; its text is pages of MLIR)
        unsupported = [line.strip() for line in str(exc).splitlines() if "TF Select ops:" in line]
        detail = unsupported[0] if unsupported else str(exc).splitlines()[0]
        raise ExportError(f"TFLite conversion of {saved_model} failed: {detail}") from None


def tflite_interpreter(content: bytes):
    """LiteRT's interpreter when ai_edge_litert is installed, else tf.lite.Interpreter.

    TF 2.21 still ships tf.lite.Interpreter; it warns on every construction that it is deprecated in favour
    of ai_edge_litert (the same class, moved). The warning says nothing about this model, so it is muted.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated", category=UserWarning
        )
        return Interpreter(model_content=content)


def tflite_predictor(content: bytes) -> Predictor:
    runner = tflite_interpreter(content).get_signature_runner(SIGNATURE)
    first = [True]

    def predict(images: np.ndarray) -> np.ndarray:
        # The signature runner resizes the batch dimension to each call's input. The first inference of a
        # process prints TFLite's "Created ... XNNPACK delegate" INFO line, filtered like TensorFlow's start-up.
        if first:
            first.clear()
            with runtime.stderr_filtered():
                return _class_probabilities(runner(**{INPUT: images}))
        return _class_probabilities(runner(**{INPUT: images}))

    return predict


def saved_model_predictor(path: Path) -> Predictor:
    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    return lambda images: _class_probabilities(
        {name: value.numpy() for name, value in signature(**{INPUT: tf.constant(images)}).items()}
    )


@dataclass(frozen=True)
class Export:
    predictors: dict[str, Predictor]  # format -> predictor, in FORMATS order
    sizes: dict[str, int]  # format -> bytes on disk


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def in_float32(model: keras.Model) -> keras.Model:
    """`model` itself, or for one trained under a mixed precision policy (train.precision) the same layers and
    weights computing in float32: TFLite has no bfloat16 or float16 kernels for its ops, and float32 is what
    the formats are compared with."""
    if all(layer.dtype_policy.name == "float32" for layer in model._flatten_layers()):
        return model

    def float32_policies(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and node.get("module") == "keras":
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: float32_policies(value) for key, value in node.items()}
        if isinstance(node, list):
            return [float32_policies(value) for value in node]
        return node

    copy = model.__class__.from_config(float32_policies(model.get_config()))
    copy.set_weights(model.get_weights())  # the variables are float32 under a mixed policy already
    return copy


def export_all(model: keras.Model, out_dir: Path, class_names: list[str]) -> Export:
    """Write every format into out_dir (plus labels.txt) and return a predictor for each. `model` computes in
    float32 (`in_float32`)."""
    saved_model = out_dir / SAVED_MODEL_DIR
    export_saved_model(model, saved_model)
    (out_dir / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names))
    predictors = {"saved_model": saved_model_predictor(saved_model)}
    sizes = {"saved_model": directory_bytes(saved_model)}
    for name, filename in TFLITE_FILES.items():
        content = convert_tflite(saved_model, quantize=name == "tflite_dynamic_range")
        (out_dir / filename).write_bytes(content)
        predictors[name] = tflite_predictor(content)
        sizes[name] = len(content)
    return Export(predictors, sizes)


@dataclass(frozen=True)
class Parity:
    max_abs_diff: dict[str, float]  # per format: the largest |probability - Keras' probability|, any class
    agreement: dict[str, float]  # per format: the share of images whose most probable class is Keras' own
    count: int  # images compared


def compare(reference: Predictor, predictors: dict[str, Predictor], batches) -> Parity:
    """Every format against the Keras model on all images in `batches`."""
    worst = dict.fromkeys(predictors, 0.0)
    agreeing = dict.fromkeys(predictors, 0)
    count = 0
    for images in batches:
        images = np.asarray(images, np.float32)
        expected = reference(images)
        for name, predict in predictors.items():
            got = predict(images)
            worst[name] = max(worst[name], float(np.abs(got - expected).max()))
            agreeing[name] += int((got.argmax(axis=1) == expected.argmax(axis=1)).sum())
        count += len(images)
    return Parity(worst, {name: agreeing[name] / max(count, 1) for name in predictors}, count)


def check_float_parity(differences: dict[str, float]) -> None:
    """Refuse exports whose float32 formats disagree with the Keras model (dynamic range is only reported)."""
    broken = [f"{name} {differences[name]:.3g}" for name in FLOAT_FORMATS if not differences[name] <= FLOAT_TOLERANCE]
    if broken:
        raise ExportError(
            f"exported model disagrees with the Keras model on the test split (max |probability difference| "
            f"{', '.join(broken)}; allowed {FLOAT_TOLERANCE:g})"
        )
