"""The pretrained bases `model.base` can name: one entry per base, with everything the pipeline needs to know.

Plain data (no Keras import), so params.py can check `model.base` and `model.image_size` against it the moment
params.yaml is loaded. models.py builds a base from its entry; `model.fine_tune_at` is checked against the layers of
the base itself (models.unfreeze_from), which no entry restates. Adding a base is adding an entry here: README
"Extending" shows one, and tests/test_bases.py builds every entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Base:
    keras_name: str  # the constructor in keras.applications
    # How the ImageNet weights expect pixels, in keras.applications' own terms (imagenet_utils.preprocess_input):
    # "tf" scales to [-1, 1], "caffe" flips RGB to BGR and subtracts the ImageNet means, "none" feeds [0, 255]
    # (the model rescales inside).
    preprocessing: Literal["tf", "caffe", "none"]
    weights_file: Callable[[int], str]  # image size -> the no-top file keras.applications looks for
    weights_url: str  # the folder that file is downloaded from
    fine_tune_at: int  # a sensible first layer to fine-tune (counted in base.layers, without the top): where the
    # base's last stage (or the reference's) starts
    min_size: int = 32  # smallest input side keras.applications accepts


def _mobilenet_v2_file(image_size: int) -> str:
    rows = image_size if image_size in (96, 128, 160, 192, 224) else 224  # the sizes Keras has weights for
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


BASES: dict[str, Base] = {
    # fine_tune_at 100: the reference tutorial's choice (block 11 of 16).
    "mobilenet_v2": Base("MobileNetV2", "tf", _mobilenet_v2_file, KERAS_WEIGHTS + "mobilenet_v2/", 100),
    # 143: conv5_block1, the last of the five stages.
    "resnet50": Base(
        "ResNet50",
        "caffe",
        lambda _: "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        KERAS_WEIGHTS + "resnet/",
        143,
    ),  # fmt: skip
    # 15: block5_conv1, the last block.
    "vgg16": Base(
        "VGG16",
        "caffe",
        lambda _: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        KERAS_WEIGHTS + "vgg16/",
        15,
    ),  # fmt: skip
    # 221: block7a, the last block.
    "efficientnet_b0": Base(
        "EfficientNetB0",
        "none",
        lambda _: "efficientnetb0_notop.h5",
        "https://storage.googleapis.com/keras-applications/",
        221,
    ),  # fmt: skip
}
