"""Baseline CNNs trained from scratch, as Keras 3 functional models: the builders of the architectures
`baseline.arch` names (architectures.py, plain data, lists them with their minimum sizes and parameter counts).

Every model takes float32 RGB images in [0, 255] of shape (image_size, image_size, 3), what the input
pipeline yields, and runs: Input -> optional `augmentation` layer (a Sequential of preprocessing layers,
active only in training) -> `Rescaling(1/255)` -> the network -> `Dense(units)` named "logit", where units is
heads.units(num_classes): one logit for two classes, one per class above. No activation: the outputs are
LOGITS (heads.loss and heads.probabilities take them). No Lambda or custom layers anywhere, so a saved model
loads with `keras.models.load_model(path, safe_mode=True)`. Each model is named after its arch.

BUILDERS[name] builds architectures.ARCHITECTURES[name]; params.py has checked the name and the image size against
that table when params.yaml was loaded, before the stage imports Keras.

    build_for_training(arch, image_size, num_classes, augmentation=None) -> TrainingModels(train, inference,
        loss_weights): what the baseline stage fits and saves. For GoogLeNet `train` has three outputs (main
        logits and the two auxiliary ones, loss weights 1.0, 0.3, 0.3 as in the paper) and `inference` is the
        main path alone, sharing the same layers and weights: fit `train`, then evaluate / save `inference`
        (the saved file holds no auxiliary heads). For every other arch `train is inference` and
        `loss_weights is None`. `TrainingModels.compile(...)` and `TrainingModels.targets` (a tf.data map
        function repeating the label once per output) hide the difference. (Logged metric names get the
        output's prefix on the 3-output model: `logit_accuracy`; fitting.py logs them under the plain names.
        Tracing GoogLeNet's training step takes ~25 s on 2 CPU cores, once per fit.)
    build(arch, image_size, num_classes, augmentation=None) -> keras.Model: the inference model alone.

Architectures (seed = the reference tutorials; paper = the original publication)
    simple_cnn  Exercise 3.03's CNN: Conv2D(64, 3) + MaxPool, Conv2D(128, 3) + MaxPool, Flatten,
                Dense(128), Dense(units). Keras defaults as in the exercise ('valid' convolutions, 2x2 pools with
                stride 2): at 100 px 100 -> 98 -> 49 -> 47 -> 23, Flatten 23*23*128 = 67,712 features.
    alexnet     the seed's AlexNet layer for layer ('valid' 11x11/4 convolution and 3x3/2 pools, 'same'
                elsewhere, Dense 4096 / Dropout 0.5 twice). The seed resizes to 227 px (6x6x256 before
                Flatten); at 224 px it is 5x5x256. Flatten makes the parameter count depend on image size.
    vgg16       VGG-16 (configuration D): 13 3x3 'same' convolutions in 5 blocks (2, 2, 3, 3, 3 convs of
                64, 128, 256, 512, 512 filters), each block ending in a 2x2/2 max pool, then the seed's head
                Flatten, Dense 4096, Dropout 0.5, Dense 4096, Dropout 0.5. 224 px gives 7x7x512 at Flatten.
    googlenet   GoogLeNet / Inception v1 as in the seed and the paper (table 1), with global average
                pooling and Dropout(0.4) before the output; auxiliary classifiers after inception 4a and 4d
                as in the paper: AveragePooling 5x5/3 ('valid': 14x14 -> 4x4 at 224 px; the seed pads
                'same', which gives 5x5), Conv 1x1 128, Dense 1024, Dropout 0.7, Dense(1). No local response
                normalisation (the seed has none either; Keras has no LRN layer). The inference model's
                count does not depend on image size (global pooling); the auxiliary heads' does (Flatten).
    resnet18    ResNet-18: 7x7/2 conv + BN + ReLU, 3x3/2 max pool, BasicBlocks [2, 2, 2, 2] of 64, 128,
                256, 512 filters (conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU), the first block of the last
                three stages (conv3 to conv5) with stride 2 and a 1x1/2 projection shortcut, global average
                pooling. Convolutions followed by BN have no bias and the projection has a BN, as in the
                paper's option B and torchvision (the seed keeps conv biases, redundant before BN, and has no
                BN on the projection).

GoogLeNet's training model (with both auxiliary heads) has more parameters than its inference model, and they
depend on the image size (the heads' Flatten); tests/test_cnns.py counts both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import layers

from stages.lib import heads

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet paper: auxiliary losses are added with weight 0.3


# ----------------------------------------------------------------------------------------------------------
# What a training stage gets


@dataclasses.dataclass(frozen=True)
class TrainingModels:
    """`train` is what to fit; `inference` (same weights, the main output only) is what to evaluate and save.

    `loss_weights` is None when `train is inference`, else one weight per output of `train`, main first.
    """

    train: keras.Model
    inference: keras.Model
    loss_weights: list[float] | None

    @property
    def num_outputs(self) -> int:
        return 1 if self.loss_weights is None else len(self.loss_weights)

    def compile(self, optimizer: Any, loss: Any, metrics: Sequence[Any] = (), **kwargs: Any) -> None:
        """Compile `train`: the same loss on every output, weighted by `loss_weights`, metrics on the main
        output only (Keras then logs them as `logit_<metric>`). Extra keyword arguments go to compile().

        A separate `inference` model is left uncompiled, so that its saved file carries no unused optimizer;
        compile it with a loss and metrics before calling its evaluate().
        """
        if self.loss_weights is None:
            self.train.compile(optimizer=optimizer, loss=loss, metrics=list(metrics), **kwargs)
            return
        self.train.compile(
            optimizer=optimizer,
            loss=[loss] * self.num_outputs,
            loss_weights=list(self.loss_weights),
            metrics=[list(metrics)] + [[] for _ in range(self.num_outputs - 1)],
            **kwargs,
        )

    def targets(self, images: Any, labels: Any, *weights: Any) -> tuple:
        """tf.data map function: (images, labels[, sample weights]) -> what `train.fit` expects: the labels (and
        weights) once per output."""
        if self.num_outputs == 1:
            return (images, labels, *weights)
        return (images, (labels,) * self.num_outputs, *[(w,) * self.num_outputs for w in weights])


def main_output(trained: keras.Model, arch: str) -> keras.Model:
    """The model to save from a trained `train` model: itself, or its main output alone (GoogLeNet)."""
    return trained if len(trained.outputs) == 1 else keras.Model(trained.inputs, trained.outputs[0], name=arch)


def _single(model: keras.Model) -> TrainingModels:
    return TrainingModels(model, model, None)


# ----------------------------------------------------------------------------------------------------------
# Shared pieces


def _inputs(image_size: int, augmentation: keras.layers.Layer | None) -> tuple[Any, Any]:
    """Input -> augmentation (training only) -> Rescaling to [0, 1]; returns (inputs, x)."""
    if augmentation is not None and not isinstance(augmentation, keras.layers.Layer):
        raise TypeError(f"augmentation must be a keras Layer (e.g. a Sequential) or None, got {augmentation!r}")
    inputs = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = keras.layers.Rescaling(1 / 255, name="rescale")(x)
    return inputs, x


def _logits(x: Any, units: int, name: str = heads.MAIN_OUTPUT) -> Any:
    return layers.Dense(units, name=name)(x)  # no activation: logits, as heads.loss expects


# ----------------------------------------------------------------------------------------------------------
# Builders: (image_size, units, augmentation) -> TrainingModels


def simple_cnn(image_size: int, units: int, augmentation: keras.layers.Layer | None = None) -> TrainingModels:
    """Exercise 3.03's CNN (the module docstring)."""
    inputs, x = _inputs(image_size, augmentation)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(128, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    return _single(keras.Model(inputs, _logits(x, units), name="simple_cnn"))


def alexnet(image_size: int, units: int, augmentation: keras.layers.Layer | None = None) -> TrainingModels:
    """The seed's AlexNet (224 px: 5x5x256 at Flatten)."""
    inputs, x = _inputs(image_size, augmentation)
    x = layers.Conv2D(96, 11, strides=4, activation="relu")(x)  # 224 -> 54 ('valid', as in the seed)
    x = layers.MaxPooling2D(3, strides=2)(x)  # -> 26
    x = layers.Conv2D(256, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(3, strides=2)(x)  # -> 12
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(3, strides=2)(x)  # -> 5
    x = layers.Flatten()(x)
    for _ in range(2):
        x = layers.Dense(4096, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    return _single(keras.Model(inputs, _logits(x, units), name="alexnet"))


VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # (convolutions, filters) per block


def vgg16(image_size: int, units: int, augmentation: keras.layers.Layer | None = None) -> TrainingModels:
    """VGG-16: 13 convolutions in 5 blocks, the seed's 4096-4096 head."""
    inputs, x = _inputs(image_size, augmentation)
    for block, (num_convs, filters) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, num_convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)  # halves the size: 224 -> 7 after 5
    x = layers.Flatten()(x)
    for _ in range(2):
        x = layers.Dense(4096, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    return _single(keras.Model(inputs, _logits(x, units), name="vgg16"))


def _inception(x: Any, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, name: str) -> Any:
    """Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated on channels."""

    def conv(y: Any, filters: int, size: int, suffix: str) -> Any:
        return layers.Conv2D(filters, size, padding="same", activation="relu", name=f"{name}_{suffix}")(y)

    p1 = conv(x, c1, 1, "1x1")
    p2 = conv(conv(x, c2[0], 1, "3x3_reduce"), c2[1], 3, "3x3")
    p3 = conv(conv(x, c3[0], 1, "5x5_reduce"), c3[1], 5, "5x5")
    p4 = conv(layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x), c4, 1, "pool_proj")
    return layers.Concatenate(name=name)([p1, p2, p3, p4])


def _aux_classifier(x: Any, units: int, name: str) -> Any:
    """GoogLeNet auxiliary head (paper section 5): 14x14x512 at 224 px -> 4x4x128 -> 1024 -> logits."""
    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)
    x = layers.Conv2D(128, 1, activation="relu", name=f"{name}_conv")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    return _logits(x, units, name=f"{name}_logit")


def googlenet(image_size: int, units: int, augmentation: keras.layers.Layer | None = None) -> TrainingModels:
    """GoogLeNet / Inception v1 with its two auxiliary classifiers for training (see TrainingModels)."""
    inputs, x = _inputs(image_size, augmentation)
    # Stem; every layer pads 'same', so sizes are ceil(size / stride): 224 -> 112 -> 56 -> 56 -> 28.
    x = layers.Conv2D(64, 7, strides=2, padding="same", activation="relu", name="conv1_7x7")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = layers.Conv2D(64, 1, activation="relu", name="conv2_3x3_reduce")(x)
    x = layers.Conv2D(192, 3, padding="same", activation="relu", name="conv2_3x3")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    x = _inception(x, 64, (96, 128), (16, 32), 32, "inception_3a")  # 28x28x256
    x = _inception(x, 128, (128, 192), (32, 96), 64, "inception_3b")  # 28x28x480
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool3")(x)
    x = _inception(x, 192, (96, 208), (16, 48), 64, "inception_4a")  # 14x14x512
    aux1 = _aux_classifier(x, units, "aux1")
    x = _inception(x, 160, (112, 224), (24, 64), 64, "inception_4b")
    x = _inception(x, 128, (128, 256), (24, 64), 64, "inception_4c")
    x = _inception(x, 112, (144, 288), (32, 64), 64, "inception_4d")  # 14x14x528
    aux2 = _aux_classifier(x, units, "aux2")
    x = _inception(x, 256, (160, 320), (32, 128), 128, "inception_4e")  # 14x14x832
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool4")(x)
    x = _inception(x, 256, (160, 320), (32, 128), 128, "inception_5a")
    x = _inception(x, 384, (192, 384), (48, 128), 128, "inception_5b")  # 7x7x1024
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(0.4, name="dropout")(x)
    logits = _logits(x, units)
    inference = keras.Model(inputs, logits, name="googlenet")
    # Same input and layers, two more outputs: training it trains `inference`'s weights.
    train = keras.Model(inputs, [logits, aux1, aux2], name="googlenet_with_aux")
    return TrainingModels(train, inference, [1.0, AUX_LOSS_WEIGHT, AUX_LOSS_WEIGHT])


def _basic_block(x: Any, filters: int, strides: int, name: str) -> Any:
    """ResNet BasicBlock: conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:  # projection shortcut to the new size and width
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


def resnet18(image_size: int, units: int, augmentation: keras.layers.Layer | None = None) -> TrainingModels:
    """ResNet-18 with BatchNorm: BasicBlocks [2, 2, 2, 2], global average pooling."""
    inputs, x = _inputs(image_size, augmentation)
    x = layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="conv1")(x)  # 224 -> 112
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.ReLU(name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)  # -> 56
    for stage, filters in enumerate((64, 128, 256, 512), start=2):
        for block in range(2):
            strides = 2 if block == 0 and stage > 2 else 1  # stages 3-5 halve the size: 56 -> 28 -> 14 -> 7
            x = _basic_block(x, filters, strides, name=f"conv{stage}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return _single(keras.Model(inputs, _logits(x, units), name="resnet18"))


# ----------------------------------------------------------------------------------------------------------
# Registry: architectures.ARCHITECTURES' names


BUILDERS: dict[str, Callable[..., TrainingModels]] = {  # (image_size, units, augmentation) -> TrainingModels
    "simple_cnn": simple_cnn,
    "alexnet": alexnet,
    "vgg16": vgg16,
    "googlenet": googlenet,
    "resnet18": resnet18,
}


def build_for_training(
    arch: str, image_size: int, num_classes: int, augmentation: keras.layers.Layer | None = None
) -> TrainingModels:
    """The model to train and the model to evaluate and save; different only for GoogLeNet (auxiliary heads)."""
    return BUILDERS[arch](image_size, heads.units(num_classes), augmentation)


def build(arch: str, image_size: int, num_classes: int, augmentation: keras.layers.Layer | None = None) -> keras.Model:
    """The single-output model of `arch`: what is evaluated, used for prediction and saved."""
    return build_for_training(arch, image_size, num_classes, augmentation).inference
