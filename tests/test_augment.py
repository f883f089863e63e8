"""Augmentation layers follow their params, have seeds of their own, and are off at inference."""

from __future__ import annotations

import numpy as np

from stages.lib import augment
from stages.lib.params import AugmentParams

NO_AUGMENT = AugmentParams(flip="none", rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0, brightness=0.0)


def test_augmentation_layers_follow_params_and_are_off_at_inference():
    assert augment.build_augmentation(NO_AUGMENT, seed=0) is None
    every = AugmentParams(flip="horizontal", rotation=0.1, zoom=0.1, translation=0.1, contrast=0.1, brightness=0.1)
    augmentation = augment.build_augmentation(every, seed=0)
    assert [type(layer).__name__ for layer in augmentation.layers] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness"
    ]  # fmt: skip
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(augmentation(images, training=False), images)
    assert not np.allclose(augmentation(images, training=True), images)


def test_each_layer_draws_from_its_own_seed():
    every = AugmentParams(flip="horizontal", rotation=0.1, zoom=0.1, translation=0.1, contrast=0.1, brightness=0.1)
    seeds = [layer.seed for layer in augment.build_augmentation(every, seed=7).layers]
    assert seeds == [7, 8, 9, 10, 11, 12]
