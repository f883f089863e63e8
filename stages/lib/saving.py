"""Model files: the project's own Keras layers (registered), saving a model atomically, and loading one with a
one-line error that names the stage to re-run.

The models the stages save load in plain Keras, `keras.saving.load_model(path)`, without this project: InferenceMode
matters only while training and is taken out before saving (`without_inference_mode`), and the ResNet50 / VGG16
preprocessing is a layer of Keras' own. FlipAveraged is test-time augmentation, applied by evaluate, export and
predict, never saved into a trained model. InferenceMode and CaffePreprocess stay registered so that models saved
by earlier versions, which hold them, still load with `load_model` here.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from stages.lib import files, lifecycle
from stages.lib.errors import PipelineError, first_line, require, rerun

PACKAGE = "imagefolder"  # the package of this project's layers, part of the name a saved file records for each
FORMER_PACKAGES = ("catsdogs",)  # its earlier names: models saved under them still load (registered_aliases)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffePreprocess(keras.layers.Layer):
    """RGB [0, 255] -> BGR minus the ImageNet channel means: the ResNet50 / VGG16 preprocessing of models saved by
    earlier versions (models.caffe_preprocessing is Keras' own Conv2D now)."""

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        return inputs[..., ::-1] - keras.ops.convert_to_tensor(self.MEAN_BGR, dtype=inputs.dtype)


class _Wrapper(keras.layers.Layer):
    """A layer around another layer or model, which its config carries (so the file holds both)."""

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "layer": keras.saving.serialize_keras_object(self.layer)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config.pop("layer")), **config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class InferenceMode(_Wrapper):
    """Calls the wrapped model with training=False, whatever mode the outer model runs in.

    In Keras 3 a Functional model passes its own `training` flag to every layer it calls, replacing a
    `training=False` written in the graph (keras-team/keras#20285): `fit` would put the base's
    BatchNorm layers in training mode as soon as they are unfrozen. This layer's call takes no
    `training` argument, so nothing overrides the one it passes on.
    """

    def call(self, inputs, mask=None):  # `mask`: what a saved model's node passed the base, replayed by clone_model
        return self.layer(inputs, training=False)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FlipAveraged(_Wrapper):
    """Test-time augmentation: the wrapped classifier on the image and on its mirror image, class probabilities
    averaged, returned as logits again (log-odds for one logit, log-probabilities for several), so that whatever
    reads logits (heads.probabilities, the export signature) is unchanged."""

    def call(self, inputs):
        ops = keras.ops
        logits = [self.layer(x, training=False) for x in (inputs, ops.flip(inputs, axis=2))]  # axis 2: width
        logits = [ops.cast(x, "float32") for x in logits]
        if logits[0].shape[-1] == 1:
            p = (ops.sigmoid(logits[0]) + ops.sigmoid(logits[1])) / 2
            p = ops.clip(p, 1e-7, 1 - 1e-7)
            return ops.log(p) - ops.log1p(-p)
        p = (ops.softmax(logits[0]) + ops.softmax(logits[1])) / 2
        return ops.log(ops.maximum(p, 1e-30))


def registered_aliases() -> None:
    """Register every layer of PACKAGE under the FORMER_PACKAGES too, so a model saved as `catsdogs>InferenceMode`
    finds InferenceMode. Called once, below."""
    custom = keras.saving.get_custom_objects()
    for name, layer in list(custom.items()):
        if name.startswith(PACKAGE + ">"):
            for former in FORMER_PACKAGES:
                custom.setdefault(former + name.removeprefix(PACKAGE), layer)


def with_test_time_augmentation(model: keras.Model, tta: str) -> keras.Model:
    """`model` as it is (tta: none), or wrapped in FlipAveraged (tta: flip): evaluate.tta, predict --tta."""
    if tta == "none":
        return model
    inputs = keras.Input(model.input_shape[1:], name="image")
    return keras.Model(inputs, FlipAveraged(model, name="flip_averaged")(inputs), name=f"{model.name}_tta_{tta}")


def _save_atomically(path: Path, suffix: str, save) -> None:
    """`save(tmp)` then rename to `path`: Keras requires the file's `suffix`, so the temporary name keeps it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.remove_stale(path, ".{stem}.tmp*" + suffix)  # left by a killed save
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{suffix}")
    try:
        with files.naming_a_full_disk(path):
            save(tmp)
        lifecycle.before_replacing()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_model(model: keras.Model, path: Path) -> None:
    _save_atomically(path, ".keras", model.save)


def without_inference_mode(model: keras.Model) -> keras.Model:
    """`model` with every InferenceMode layer replaced by the layer it wraps (the same layers and weights): what a
    stage saves, so that the file loads in plain Keras. At inference the two give the same outputs: InferenceMode
    only keeps BatchNorm in inference mode while training. A model without one is returned as it is."""
    if not any(isinstance(layer, InferenceMode) for layer in model.layers):
        return model
    return keras.models.clone_model(
        model, clone_function=lambda layer: layer.layer if isinstance(layer, InferenceMode) else layer
    )


def save_weights(model: keras.Model, path: Path) -> None:
    _save_atomically(path, ".weights.h5", model.save_weights)


def load_model(path: Path, stage: str = "", *, compile: bool = False) -> keras.Model:
    """The model in `path` (safe_mode: no code in the file runs); without its optimizer unless `compile`.

    `stage` names the stage that writes the file, for the error when it is missing or cannot be read.
    """
    path = require(path, stage) if stage else Path(path)
    try:
        return keras.models.load_model(path, safe_mode=True, compile=compile)
    except Exception as exc:  # noqa: BLE001  (Keras, h5py and zipfile raise many types for a damaged file)
        problem = f"not a readable Keras model ({_why_unreadable(path, exc)})"
        raise (rerun(path, stage, problem) if stage else PipelineError(f"{path}: {problem}")) from None


def _why_unreadable(path: Path, exc: BaseException) -> str:
    """Why Keras could not load the file at `path`, in one line. Keras 3 says "File not found" for any .keras path
    that is not a zip archive, a damaged file that is there included: that case is said as it is."""
    if path.suffix == ".keras" and path.is_dir():
        return "a folder, not a .keras file"
    if path.suffix == ".keras" and path.is_file() and not zipfile.is_zipfile(path):
        kind = "empty" if path.stat().st_size == 0 else "not (truncated, or another kind of file)"
        return f"a .keras file is a zip archive, and this one is {kind}"
    return first_line(exc)


def image_size(model: keras.Model, path: Path) -> tuple[int, int]:
    """(height, width) of the RGB images `model` takes; PipelineError naming its input shape for any other input
    (grayscale, RGBA, a vector, several inputs, a size left open)."""
    shape = model.input_shape
    if not (
        isinstance(shape, tuple) and len(shape) == 4 and shape[3] == 3 and all(isinstance(d, int) for d in shape[1:3])
    ):
        raise PipelineError(
            f"{path}: its input has shape {shape}, not images of a fixed height x width x 3 (RGB), which are what "
            "this project feeds a model; pass a model trained by this pipeline"
        )
    return shape[1], shape[2]


registered_aliases()
