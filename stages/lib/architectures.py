"""The baseline CNNs `baseline.arch` can name, as plain data (no Keras): one entry per architecture, so params.py
checks `baseline.arch` and `baseline.image_size` the moment params.yaml is loaded. cnns.py builds each (its docstring
describes them, layer by layer); adding one is a builder there and an entry here, and tests/test_cnns.py builds every
entry at each size its `parameters` name and counts them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    # The smallest image side at which every layer gets a non-empty input, i.e. the network runs.
    min_size: int
    # model.count_params() of the inference model (non-trainable BatchNorm statistics included) for one logit (two
    # classes), by image size: the documented size and the minimum.
    parameters: dict[int, int]


ARCHITECTURES: dict[str, Architecture] = {
    # Exercise 3.03's CNN at its 100 px: the exercise's "more than 8,700,000" (Flatten 23*23*128 = 67,712 features).
    "simple_cnn": Architecture(10, {100: 8_743_041, 10: 92_289}),
    # 'valid' 11x11/4 convolution and three 3x3/2 pools; Flatten makes the count depend on the size.
    "alexnet": Architecture(67, {224: 46_751_105, 67: 21_585_281}),
    # Five 2x2 pools. At 224 px the Keras applications VGG16's 14,714,688 convolution parameters plus the head.
    "vgg16": Architecture(32, {224: 134_264_641, 32: 33_601_345}),
    # The first auxiliary head's 5x5/3 'valid' pool needs a 5x5 map after a total stride of 16. Global pooling: the
    # inference model's count does not depend on the size.
    "googlenet": Architecture(65, {224: 5_974_577, 65: 5_974_577}),
    # Pads 'same' everywhere and runs at any size: 32, its total stride, is a policy, not a shape limit (smaller is
    # refused as a likely mistake). 11,186,625 = torchvision's resnet18 with a 1-unit head (11,177,025 trainable) plus
    # the 9,600 moving means and variances of its BatchNorm layers.
    "resnet18": Architecture(32, {224: 11_186_625, 32: 11_186_625}),
}
