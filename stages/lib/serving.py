"""Serving exports of a trained model: a SavedModel for TF Serving and TFLite (float32, dynamic range, full-integer
int8), each run beside the Keras model on the test split (`compare`) and loaded again by predict (`load_served`).

Every export has one signature, `serving_default`: input `image` (float32 RGB in [0, 255], N x S x S x 3,
the Keras model's own input). Outputs, for two classes: `logit` and `probability` (sigmoid of the logit; the
probability of class index 1, whose name is on line 2 of labels.txt), each N x 1; for more classes: `logits`
and `probabilities` (softmax), each N x classes, in the order of labels.txt.

The model is traced with `training=False`. Keras 3.15's `model.export(path, format="tf_saved_model")`
traces `model.__call__` without it, and the random preprocessing layers default to training=True: the
augmentation of the transfer and finetune models (random flip and rotation) would then run in the served
graph, and the TFLite converter refuses its ops (StatelessRandomUniformV2, ImageProjectiveTransformV3)
without TF Select.

The int8 model is TFLite's post-training full-integer quantization: int8 weights and activations, the ranges of the
activations calibrated on representative train images (export.representative_images), builtin int8 kernels only,
and float32 input and output (a quantize op in, a dequantize op out), so that it is a drop-in for the float32 file.
Its weights are quantized per output channel, TFLite's default (`export.int8_per_channel: false`: one scale per
tensor, about 15% smaller on MobileNetV2, whose 34,000 channels each store a float32 scale and an int64 zero point;
its accuracy is checked like every format's).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from stages.lib import heads, internals, runtime
from stages.lib.errors import PipelineError, first_line

SIGNATURE = "serving_default"
INPUT = "image"
SAVED_MODEL_DIR = "saved_model/1"  # TF Serving's layout: --model_base_path=<export>/saved_model, version 1
LABELS_FILE = "labels.txt"
KERAS_FILE = "model.keras"  # the chosen model itself, for predict and for Keras users
TFLITE_FILES = {
    "tflite_float32": "model_float32.tflite",
    "tflite_dynamic_range": "model_dynamic_range.tflite",  # int8 weights, activations quantized on the fly
    "tflite_int8": "model_int8.tflite",  # full integer: int8 weights and activations, float32 input and output
}
QUANTIZATION = {"tflite_float32": "none", "tflite_dynamic_range": "dynamic_range", "tflite_int8": "int8"}
FORMATS = ("saved_model", *TFLITE_FILES)
# Formats that compute in float32 like the Keras model: anything past this on a probability is a broken
# export (a different graph or preprocessing), not rounding. Measured on the tiny test model: 2e-7
# (SavedModel), 1e-6 to 2e-5 (TFLite, which fuses ops).
FLOAT_FORMATS = ("saved_model", "tflite_float32")
FLOAT_TOLERANCE = 1e-4

Predictor = Callable[[np.ndarray], np.ndarray]  # images N x S x S x 3 -> class probabilities, N x classes


class ExportError(PipelineError):
    pass


class UnreadableModel(PipelineError):
    """A model file that is there but is not one this project can load (damaged, or another kind of file)."""


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


def convert_tflite(
    saved_model: Path,
    quantization: str = "none",
    representative: Iterable[np.ndarray] | None = None,
    per_channel: bool = True,
) -> bytes:
    """TFLite flatbuffer of the SavedModel's serving signature, TFLite builtin ops only.

    `quantization`: none (float32), dynamic_range (int8 weights) or int8 (full integer, calibrated on
    `representative`, images N x S x S x 3 float32 in [0, 255]; weights per output channel unless not
    `per_channel`). No TF Select fallback: a graph that needs full TensorFlow ops (random augmentation would) fails
    here instead of producing a model most TFLite runtimes cannot run; for int8, so does an op without an int8 kernel.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "none":  # DEFAULT without a representative dataset = dynamic-range quantization
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "int8":
        if representative is None:
            raise ValueError("int8 quantization needs representative images")
        images = [np.asarray(image, np.float32) for image in representative]
        converter.representative_dataset = lambda: ({INPUT: image[None]} for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not per_channel:  # TFLite's only switch for it is private
            internals.per_tensor_int8(converter)
    try:
        with runtime.stderr_filtered(), interpreter_warning_muted():  # the quantizer's settings line; see there
            return converter.convert()
    except Exception as exc:  # noqa: BLE001  (ConverterError lives in a private module; its text is pages of MLIR)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        unsupported = [line for line in lines if "TF Select ops:" in line or "int8" in line.lower()]
        detail = unsupported[0] if unsupported else (lines[0] if lines else type(exc).__name__)
        raise ExportError(f"TFLite conversion ({quantization}) of {saved_model} failed: {detail}") from None


def threads() -> int:
    """CPU threads an interpreter runs on here: the cores this process may use (TensorFlow's own default)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def tflite_interpreter(content: bytes):
    """LiteRT's interpreter when ai_edge_litert is installed, else tf.lite.Interpreter, on `threads()` threads.

    TF 2.21 still ships tf.lite.Interpreter; it warns on every construction that it is deprecated in favour
    of ai_edge_litert (the same class, moved): `interpreter_warning_muted`.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with interpreter_warning_muted():
        return Interpreter(model_content=content, num_threads=threads())


@contextlib.contextmanager
def interpreter_warning_muted() -> Iterator[None]:
    """tf.lite.Interpreter's deprecation warning muted: it says nothing about the model (the int8 converter builds
    an interpreter to calibrate, too)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated", category=UserWarning
        )
        yield


def _to_input(values: np.ndarray, detail: dict) -> np.ndarray:
    """Images as the input tensor takes them: float32 as they are, quantized for an integer input."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return values.astype(dtype)
    scale, zero_point = detail["quantization"]
    bounds = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), bounds.min, bounds.max).astype(dtype)


def _from_output(values: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor's values as float: dequantized for an integer output."""
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return values
    return (values.astype(np.float64) - zero_point) * scale


def tflite_predictor(content: bytes) -> Predictor:
    """The serving signature of a TFLite model; float32 or integer (quantized) input and outputs alike."""
    return _runner_predictor(tflite_interpreter(content).get_signature_runner(SIGNATURE))


def _runner_predictor(runner) -> Predictor:
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    first = [True]

    def run(images: np.ndarray) -> np.ndarray:
        got = runner(**{INPUT: _to_input(np.asarray(images, np.float32), inputs[INPUT])})
        return _class_probabilities({name: _from_output(value, outputs[name]) for name, value in got.items()})

    def predict(images: np.ndarray) -> np.ndarray:
        # The signature runner resizes the batch dimension to each call's input. The first inference of a
        # process prints TFLite's "Created ... XNNPACK delegate" INFO line, filtered like TensorFlow's start-up.
        if first:
            first.clear()
            with runtime.stderr_filtered():
                return run(images)
        return run(images)

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
    paths: dict[str, Path]  # format -> its file (the SavedModel's folder), in the export folder


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def in_float32(model: keras.Model) -> keras.Model:
    """`model` itself, or for one trained under a mixed precision policy (train.precision) the same layers and
    weights computing in float32: TFLite has no bfloat16 or float16 kernels for its ops, and float32 is what
    the formats are compared with."""
    if all(layer.dtype_policy.name == "float32" for layer in internals.all_layers(model)):
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


def export_all(
    model: keras.Model,
    out_dir: Path,
    class_names: list[str],
    representative: np.ndarray,
    int8_per_channel: bool = True,
) -> Export:
    """Write every format into out_dir (plus labels.txt) and return a predictor for each. `model` computes in
    float32 (`in_float32`); `representative`, train images N x S x S x 3, calibrates the int8 model."""
    saved_model = out_dir / SAVED_MODEL_DIR
    export_saved_model(model, saved_model)
    (out_dir / LABELS_FILE).write_text("".join(f"{name}\n" for name in class_names))
    predictors = {"saved_model": saved_model_predictor(saved_model)}
    sizes = {"saved_model": directory_bytes(saved_model)}
    paths = {"saved_model": saved_model}
    for name, filename in TFLITE_FILES.items():
        content = convert_tflite(saved_model, QUANTIZATION[name], representative, int8_per_channel)
        (out_dir / filename).write_bytes(content)
        predictors[name] = tflite_predictor(content)
        sizes[name] = len(content)
        paths[name] = out_dir / filename
    return Export(predictors, sizes, paths)


# ---- any exported file, loaded again (predict, and export's latency) --------------------------------------------


@dataclass(frozen=True)
class Served:
    """A model file of any format export writes, ready to classify images."""

    path: Path  # what runs: the file, or the SavedModel's version folder
    kind: str  # Keras, SavedModel or TFLite
    size: tuple[int, int]  # (height, width) of the RGB images it takes
    units: int  # outputs per image: 1 for two classes, else one per class (heads.units)
    predict: Predictor


def load_served(path: Path) -> Served:
    """The model in `path`: a .tflite file, a SavedModel folder (its version folder, or TF Serving's base folder,
    whose highest version is what TF Serving serves), else a Keras file. One line naming the file for anything else:
    UnreadableModel for a file that does not load, PipelineError for a model that does not take images of a fixed
    size or does not output class probabilities as the export stage's files do."""
    path = Path(path)
    if path.suffix == ".tflite":
        return _load_tflite(path)
    if path.is_dir() and path.suffix != ".keras":
        return _load_saved_model(_saved_model_folder(path))
    from stages.lib import saving

    try:
        model = saving.load_model(path)
    except PipelineError as exc:
        raise UnreadableModel(str(exc)) from None
    size = saving.image_size(model, path)
    return Served(path, "Keras", size, int(model.output_shape[-1]), keras_predictor(model))


def _checked_io(path: Path, kind: str, input_shape, outputs: dict[str, tuple]) -> tuple[tuple[int, int], int]:
    """(size, units) of a signature with input INPUT of N x H x W x 3 and the outputs `_outputs` gives."""
    shape = tuple(input_shape) if input_shape is not None else ()
    if not (len(shape) == 4 and shape[3] == 3 and all(isinstance(d, int) and d > 0 for d in shape[1:3])):
        raise PipelineError(
            f"{path}: its input has shape {shape}, not images of a fixed height x width x 3 (RGB); pass a model "
            "the export stage wrote"
        )
    if "probability" in outputs:
        return (shape[1], shape[2]), 1
    if "probabilities" in outputs and outputs["probabilities"]:
        return (shape[1], shape[2]), int(outputs["probabilities"][-1])
    raise PipelineError(
        f"{path}: a {kind} model whose {SIGNATURE} signature outputs {', '.join(sorted(outputs)) or 'nothing'}, "
        "not probability or probabilities; pass a model the export stage wrote"
    )


def _load_tflite(path: Path) -> Served:
    try:
        runner = tflite_interpreter(path.read_bytes()).get_signature_runner(SIGNATURE)
    except (OSError, ValueError, RuntimeError) as exc:
        problem = f"not a readable TFLite model with a {SIGNATURE} signature ({first_line(exc)})"
        raise UnreadableModel(f"{path}: {problem}") from None
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    if INPUT not in inputs:
        raise PipelineError(f"{path}: its {SIGNATURE} signature has no input {INPUT!r} ({', '.join(inputs)}); pass "
                            "a model the export stage wrote")  # fmt: skip
    shapes = {name: tuple(int(d) for d in detail["shape"]) for name, detail in outputs.items()}
    size, units = _checked_io(path, "TFLite", [int(d) for d in inputs[INPUT]["shape"]], shapes)
    return Served(path, "TFLite", size, units, _runner_predictor(runner))


def _saved_model_folder(path: Path) -> Path:
    if (path / "saved_model.pb").is_file():
        return path
    versions = [d for d in path.iterdir() if d.name.isdigit() and (d / "saved_model.pb").is_file()]
    if not versions:
        raise UnreadableModel(
            f"{path}: a folder, but no SavedModel (no saved_model.pb in it or in a numbered version folder); pass a "
            "model file or the SavedModel folder the export stage wrote"
        )
    return max(versions, key=lambda d: int(d.name))  # the version TF Serving serves


def _load_saved_model(path: Path) -> Served:
    try:
        signature = tf.saved_model.load(str(path)).signatures[SIGNATURE]
    except KeyError:
        raise PipelineError(f"{path}: a SavedModel without a {SIGNATURE} signature; pass the one the export "
                            "stage wrote") from None  # fmt: skip
    except Exception as exc:  # noqa: BLE001  (TensorFlow raises many types for a damaged SavedModel)
        raise UnreadableModel(f"{path}: not a readable SavedModel ({first_line(exc)})") from None
    inputs = signature.structured_input_signature[1]
    outputs = {name: tuple(spec.shape) for name, spec in signature.structured_outputs.items()}
    shape = tuple(inputs[INPUT].shape) if INPUT in inputs else None
    size, units = _checked_io(path, "SavedModel", shape, outputs)
    predict = lambda images: _class_probabilities(  # noqa: E731
        {name: value.numpy() for name, value in signature(**{INPUT: tf.constant(images)}).items()}
    )
    return Served(path, "SavedModel", size, units, predict)


def flip_averaged(predict: Predictor) -> Predictor:
    """Test-time augmentation: each image's class probabilities averaged with its mirror image's (as FlipAveraged
    does inside a Keras model), for a model of any format."""
    return lambda images: (predict(images) + predict(np.asarray(images)[:, :, ::-1])) / 2


def median_latency_ms(predict: Predictor, image: np.ndarray, warmup: int, runs: int) -> float:
    """Milliseconds of one call on one image (batch 1), the median of `runs` timed calls after `warmup` untimed
    ones (the first calls allocate, trace and fill caches). The median, not the mean: a call the scheduler
    interrupts on a shared CPU moves the mean and not the median."""
    batch = np.asarray(image, np.float32)[None]
    for _ in range(warmup):
        predict(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of this machine has spent busy since boot, from /proc/stat (None without one): with
    this process's own CPU time, what other programs took from the CPU while latency was measured."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = values[3] + values[4]  # idle and iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def cpu_taken_by_others(result: dict) -> Iterator[None]:
    """While the block runs, the share of this machine's CPU time that other processes used (0: the CPU was this
    process's alone; 1: every core busy with others), into result["share"] (None where it cannot be known)."""
    busy, own, start = machine_busy_seconds(), time.process_time(), time.perf_counter()
    yield
    wall, after = time.perf_counter() - start, machine_busy_seconds()
    others = None if busy is None or after is None else (after - busy) - (time.process_time() - own)
    cores = os.cpu_count() or 1
    result["share"] = None if others is None or wall <= 0 else round(min(max(others / (wall * cores), 0), 1), 2)


THRESHOLD = 0.5  # two classes: class 1 from this probability on (predict's default), as heads.predicted decides


@dataclass(frozen=True)
class Parity:
    """Every format beside the Keras model on the test split."""

    max_abs_diff: dict[str, float]  # per format: the largest |probability - Keras' probability|, any class
    agreement: dict[str, float]  # per format: the share of images whose predicted class is Keras' own
    correct: dict[str, int]  # per format, and for KERAS: images whose predicted class is their label
    confusion: np.ndarray  # the Keras model's: images of true class i predicted as class j
    count: int  # images compared

    def accuracy(self, name: str) -> float:
        return self.correct[name] / max(self.count, 1)


KERAS = "keras"  # the Keras model itself, in Parity.correct and in metrics/export.json


def compare(reference: Predictor, predictors: dict[str, Predictor], batches: Iterable) -> Parity:
    """Every format against the Keras model, and both against the labels, on all (images, labels) in `batches`."""
    worst = dict.fromkeys(predictors, 0.0)
    agreeing = dict.fromkeys(predictors, 0)
    correct = dict.fromkeys([KERAS, *predictors], 0)
    confusion = None
    count = 0
    for images, labels in batches:
        images, labels = np.asarray(images, np.float32), np.asarray(labels)
        expected = reference(images)
        keras_classes = heads.predicted(expected, THRESHOLD)
        if confusion is None:
            confusion = np.zeros((expected.shape[1], expected.shape[1]), np.int64)
        np.add.at(confusion, (labels, keras_classes), 1)
        correct[KERAS] += int((keras_classes == labels).sum())
        for name, predict in predictors.items():
            got = predict(images)
            classes = heads.predicted(got, THRESHOLD)
            worst[name] = max(worst[name], float(np.abs(got - expected).max()))
            agreeing[name] += int((classes == keras_classes).sum())
            correct[name] += int((classes == labels).sum())
        count += len(images)
    agreement = {name: agreeing[name] / max(count, 1) for name in predictors}
    return Parity(worst, agreement, correct, confusion if confusion is not None else np.zeros((0, 0)), count)


def flags(parity: Parity, min_agreement: float, max_accuracy_drop: float) -> dict[str, str]:
    """The formats not to trust, each with why: predicting another class than Keras' on more test images than
    `min_agreement` allows, or losing more than `max_accuracy_drop` of the Keras model's test accuracy."""
    out = {}
    for name, agreement in parity.agreement.items():
        reasons = []
        drop = (parity.correct[KERAS] - parity.correct[name]) / max(parity.count, 1)
        if drop > max_accuracy_drop + 1e-12:  # counts of images: no float noise decides it
            reasons.append(
                f"test accuracy {parity.accuracy(name):.4f} is {drop:.4f} below the Keras model's "
                f"{parity.accuracy(KERAS):.4f}, more than export.max_accuracy_drop {max_accuracy_drop}"
            )
        if agreement < min_agreement:
            reasons.append(
                f"predicts the Keras model's class on {agreement:.1%} of the test images, below export.min_agreement "
                f"{min_agreement:.1%}"
            )
        if reasons:
            out[name] = f"{name}: " + "; ".join(reasons)
    return out


def check_float_parity(differences: dict[str, float]) -> None:
    """Refuse exports whose float32 formats disagree with the Keras model (dynamic range is only reported)."""
    broken = [f"{name} {differences[name]:.3g}" for name in FLOAT_FORMATS if not differences[name] <= FLOAT_TOLERANCE]
    if broken:
        raise ExportError(
            f"exported model disagrees with the Keras model on the test split (max |probability difference| "
            f"{', '.join(broken)}; allowed {FLOAT_TOLERANCE:g})"
        )
