"""Data augmentation as Keras preprocessing layers, built from an `augment` params section.

The layers sit inside the model, so a saved model carries them, and Keras turns them off at inference.
"""

from __future__ import annotations

import keras


def build_augmentation(augment, seed: int) -> keras.Sequential | None:
    """Keras preprocessing layers from the `augment` params, or None when every one is off (0 or "none").

    Each layer has its own seed derived from `seed`, so two layers never draw the same random numbers.
    """
    layers: list[keras.layers.Layer] = []
    if augment.flip != "none":
        layers.append(keras.layers.RandomFlip(augment.flip, seed=seed))
    if augment.rotation:
        layers.append(keras.layers.RandomRotation(augment.rotation, seed=seed + 1))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom(augment.zoom, seed=seed + 2))
    if augment.translation:
        layers.append(keras.layers.RandomTranslation(augment.translation, augment.translation, seed=seed + 3))
    if augment.contrast:
        layers.append(keras.layers.RandomContrast(augment.contrast, seed=seed + 4))
    if augment.brightness:
        # value_range: the images are still in [0, 255] at this point, before any preprocessing.
        layers.append(keras.layers.RandomBrightness(augment.brightness, value_range=(0, 255), seed=seed + 5))
    return keras.Sequential(layers, name="augmentation") if layers else None
