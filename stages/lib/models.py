"""The transfer model on a pretrained base (bases.BASES), its weights, and fine-tuning.

    Input (S, S, 3) float32 in [0, 255]
      -> augmentation (Keras preprocessing layers; identity at inference)
      -> the base's own preprocessing, as Keras' own layers (no Lambda, so models load with safe_mode=True)
      -> base (frozen; wrapped in InferenceMode so BatchNorm stays in inference mode, also when fine-tuning)
      -> GlobalAveragePooling2D -> Dropout -> Dense(units) logits (heads.units: 1 for two classes)

With MobileNetV2 at 160 px and two classes: 2,259,265 parameters, 1,281 trainable (the reference's counts,
reference.py). InferenceMode matters only while training: the saved model holds the base itself
(saving.without_inference_mode), so it loads in plain Keras, and fine-tuning wraps it again (with_inference_mode).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from stages.lib import heads, records
from stages.lib.bases import BASES, Base
from stages.lib.errors import PipelineError, first_line
from stages.lib.saving import InferenceMode

BASE_LAYER_NAME = "base"
FEATURES_LAYER_NAME = "features"  # the pooled base output, what the cached-features path trains on
HEAD_LAYER_NAMES = ("dropout", "logits")


class ModelError(PipelineError):
    pass


def preprocessing(base: Base) -> keras.layers.Layer:
    """The base's input scaling as a Keras layer, by keras.applications' preprocess_input mode."""
    if base.preprocessing == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")  # [-1, 1]
    if base.preprocessing == "caffe":
        return caffe_preprocessing()
    return keras.layers.Identity(name="preprocess")  # the model rescales inside


# RGB in [0, 255] -> BGR minus the ImageNet channel means (what ResNet50 and VGG16 weights expect), as a frozen 1x1
# convolution, a layer Keras loads by itself: each output is 1 x one input channel + 0 x the others + a bias, exact.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def caffe_preprocessing() -> keras.layers.Layer:
    to_bgr = np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)  # output channel i reads input channel 2 - i
    return keras.layers.Conv2D(
        3, 1, name="preprocess", trainable=False,
        kernel_initializer=keras.initializers.Constant(to_bgr),
        bias_initializer=keras.initializers.Constant(-np.asarray(CAFFE_MEAN_BGR, dtype="float32")),
    )  # fmt: skip


def resolve_weights(base_name: str, weights: str, image_size: int, stage: str) -> str | None:
    """What to pass as `weights=` to keras.applications: "imagenet" (file present), None, or a file path.

    For "imagenet" the file is fetched into Keras' cache with the project's downloader first (short
    timeouts), so an offline machine fails in seconds with instructions instead of hanging in Keras; `stage` says
    its retries.
    """
    if weights == "none":
        return None
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise ModelError(f"model.weights: {weights} is not a file (use imagenet, none, or a weights file path)")
        return weights
    base = BASES[base_name]
    name = base.weights_file(image_size)
    from stages.lib.fetch import DownloadError, download, keras_home  # transport only: see dvc.yaml on plumbing

    target = keras_home() / "models" / name
    if not target.is_file():
        url = base.weights_url + name
        try:
            download(url, target, retries=1, stage=stage)
        except DownloadError:
            raise ModelError(
                f"model.weights: imagenet needs {name} in {target.parent}, and it could not be downloaded from "
                f"{url}. Copy the file there (or set KERAS_HOME), set model.weights to the path of a weights "
                "file, or use model.weights: none to train from random weights."
            ) from None
    return "imagenet"


def weights_sha256(base_name: str, weights: str | None, image_size: int) -> str:
    """sha256 of the weights file a base starts from (resolve_weights' answer), or "none" for random weights."""
    from stages.lib.fetch import keras_home
    from stages.lib.files import sha256_file

    if weights is None:
        return "none"
    if weights == "imagenet":
        return sha256_file(keras_home() / "models" / BASES[base_name].weights_file(image_size))
    return sha256_file(weights)


def build_base(base_name: str, image_size: int, weights: str | None) -> keras.Model:
    """The base without its top, with ImageNet weights ("imagenet"), random ones (None) or a file's."""
    base = BASES[base_name]
    explicit_file = weights not in (None, "imagenet")
    constructor = getattr(keras.applications, base.keras_name)
    model = constructor(
        input_shape=(image_size, image_size, 3), include_top=False, weights=None if explicit_file else weights
    )
    if explicit_file:
        try:
            model.load_weights(weights)  # Keras 3 .weights.h5 or the legacy no-top .h5 of keras.applications
        except Exception as exc:  # noqa: BLE001  (h5py and Keras raise many types for a wrong file)
            raise ModelError(f"model.weights: cannot load {weights} into {base_name}: {first_line(exc)}") from None
    return model


def calibrate_batchnorm(base: keras.Model, images) -> None:
    """Set every BatchNorm's moving mean and variance to the statistics of its inputs on `images`.

    For a base with random weights (model.weights: none): Keras starts every BatchNorm at mean 0 and
    variance 1, which fits none of MobileNetV2's layers, so the signal fades through the blocks and every
    image gives the same features. One training-mode pass over one batch with momentum 0 replaces the moving
    statistics by that batch's; each layer then sees inputs normalised by the earlier layers' batch statistics,
    which are now their moving statistics, so inference normalises exactly as this pass did. Labels are not
    used. `images` must already be preprocessed as the model preprocesses them; call this before freezing the
    base (a frozen BatchNorm runs in inference mode and would not update).
    """
    if not base.trainable:
        raise ValueError("calibrate_batchnorm: the base is frozen, so its BatchNorm layers would not update")
    layers = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        base(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def calibrate_on_train(
    base: keras.Model, base_name: str, records_dir: Path, image_size: int, count: int, seed: int
) -> int:
    """calibrate_batchnorm on `count` train images: the first batch of a seeded shuffle (all, if the split is
    smaller), so the transfer and audit stages give a random base the same statistics. Returns the images used."""
    shuffled = records.make_dataset(records_dir, "train", image_size=image_size, batch_size=count, shuffle_seed=seed)
    images, _ = next(iter(shuffled))
    calibrate_batchnorm(base, preprocessing(BASES[base_name])(images))
    return int(images.shape[0])


def build_transfer_model(
    base: keras.Model,
    base_name: str,
    image_size: int,
    num_classes: int,
    dropout: float,
    augmentation: keras.Sequential | None = None,
) -> keras.Model:
    """The frozen `base` (built by build_base) under a new head: see the module docstring."""
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = _pooled_features(x, base, base_name)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(heads.units(num_classes), name="logits")(x)
    return keras.Model(inputs, outputs, name=f"transfer_{base_name}")


def build_feature_model(base: keras.Model, base_name: str, image_size: int) -> keras.Model:
    """Image -> the frozen `base`'s pooled features: the transfer model's layers up to FEATURES_LAYER_NAME, without
    augmentation (what its cached-features path trains on), for the audit stage, which needs the features alone."""
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    return keras.Model(inputs, _pooled_features(inputs, base, base_name), name=f"features_{base_name}")


def _pooled_features(x, base: keras.Model, base_name: str):
    x = preprocessing(BASES[base_name])(x)
    base.name = BASE_LAYER_NAME  # its name in the saved model, where it stands without the wrapper
    x = InferenceMode(base, name=BASE_LAYER_NAME)(x)  # BatchNorm in inference mode, also when fine-tuning
    return keras.layers.GlobalAveragePooling2D(name=FEATURES_LAYER_NAME)(x)


def with_inference_mode(model: keras.Model) -> keras.Model:
    """A saved transfer model (its base as a plain layer) with the base wrapped in InferenceMode again, the same
    layers and weights: what fine-tuning trains. A model that has the wrapper already is returned as it is."""
    if isinstance(model.get_layer(BASE_LAYER_NAME), InferenceMode):
        return model
    wrapped = keras.models.clone_model(
        model,
        clone_function=lambda layer: InferenceMode(layer, name=BASE_LAYER_NAME) if layer.name == BASE_LAYER_NAME
        else layer,
    )  # fmt: skip
    return wrapped


def base_of(model: keras.Model) -> keras.Model:
    """The pretrained base of a transfer model, wrapped in InferenceMode (training) or as saved."""
    layer = model.get_layer(BASE_LAYER_NAME)
    return layer.layer if isinstance(layer, InferenceMode) else layer


def unfreeze_from(model: keras.Model, fine_tune_at: int, base_name: str) -> None:
    """Make the base (`model.base` `base_name`) trainable from layer `fine_tune_at` on; the head stays trainable."""
    base = base_of(model)
    count = len(base.layers)  # the one statement of how many layers the base has
    if not 0 <= fine_tune_at < count:
        raise ModelError(
            f"model.fine_tune_at: {fine_tune_at} is past the base's layers; {base_name} has {count}, so allowed "
            f"values are 0 to {count - 1} (its own choice: {BASES[base_name].fine_tune_at}, or null for that)"
        )
    base.trainable = True
    for layer in base.layers[:fine_tune_at]:
        layer.trainable = False


def _cut(base: keras.Model, fine_tune_at: int) -> list:
    """The tensors that cross from the base's layers below `fine_tune_at` to the ones from it on: one in a plain
    chain, two inside a residual block (the block's input, for its skip connection, and the current one). Found
    with Keras' public `layer.input` and `layer.output` (each layer of a keras.applications base is called once)."""

    def tensors(value) -> list:
        return list(value) if isinstance(value, (list, tuple)) else [value]

    below = {id(tensor) for layer in base.layers[:fine_tune_at] for tensor in tensors(layer.output)}
    crossing: list = []
    for layer in base.layers[fine_tune_at:]:
        for tensor in tensors(layer.input):
            if id(tensor) in below and all(tensor is not t for t in crossing):
                crossing.append(tensor)
    return crossing


def frozen_part(model: keras.Model, fine_tune_at: int) -> keras.Model:
    """Image -> the activations at the cut: everything fine-tuning from `fine_tune_at` leaves frozen, in inference
    mode (augmentation off, preprocessing, the base's lower layers). Its outputs never change during training."""
    base = base_of(model)
    lower = keras.Model(model.input, model.get_layer(BASE_LAYER_NAME).input)  # augmentation and preprocessing
    below = keras.Model(base.input, _cut(base, fine_tune_at))
    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, below(lower(inputs)))


def trained_part(model: keras.Model, fine_tune_at: int) -> keras.Model:
    """The activations at the cut -> logits: `model`'s own layers from `fine_tune_at` on and its head, shared, so
    that scoring it scores `model` and training it trains `model`. The base's layers run in inference mode, as in
    `model` (InferenceMode); the head's dropout follows the training flag, as in `model`."""
    base = base_of(model)
    cut = _cut(base, fine_tune_at)
    upper = keras.Model(cut, base.output)
    inputs = [keras.Input(tensor.shape[1:]) for tensor in cut]
    x = model.get_layer(FEATURES_LAYER_NAME)(InferenceMode(upper, name="upper_base")(inputs))
    for name in HEAD_LAYER_NAMES:
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x)


def has_augmentation(model: keras.Model) -> bool:
    """Whether `model` augments its training images (augment.build_augmentation's layer)."""
    return any(layer.name == "augmentation" for layer in model.layers)


def activations(part: keras.Model, dataset) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Run `part` (frozen_part) once over an unshuffled split of (images, labels) batches: (activations, labels)."""
    found, labels = [], []
    for images, batch_labels in dataset:
        outputs = part(images, training=False)
        found.append([np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])])
        labels.append(batch_labels.numpy())
    return tuple(np.concatenate(column) for column in zip(*found)), np.concatenate(labels)


def features(feature_model: keras.Model, dataset, augmented: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run a frozen base once over an unshuffled split of (images, labels) batches: (features, labels). With
    `augmented`, the model's augmentation layer runs in training mode: the features of one random view of each."""
    found, labels = [], []
    for images, batch_labels in dataset:
        found.append(feature_model(images, training=augmented).numpy())  # the base is InferenceMode either way
        labels.append(batch_labels.numpy())
    return np.concatenate(found), np.concatenate(labels)


def head_on_features(model: keras.Model, features_shape: tuple[int, ...]) -> keras.Model:
    """The transfer model's own head layers on a features input: training it trains `model`'s head."""
    head_input = keras.Input(features_shape, name="features")
    head_output = head_input
    for name in HEAD_LAYER_NAMES:
        head_output = model.get_layer(name)(head_output)
    return keras.Model(head_input, head_output, name="head")
