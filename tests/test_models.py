from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib import augment, models, reference, training
from stages.lib.bases import BASES
from stages.lib.params import AugmentParams

NO_AUGMENT = AugmentParams(flip="none", rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0, brightness=0.0)


def transfer_model(
    size: int = 160, base: str = "mobilenet_v2", layers: AugmentParams = NO_AUGMENT, classes: int = 2
) -> keras.Model:
    augmentation = augment.build_augmentation(layers, seed=0)
    return models.build_transfer_model(models.build_base(base, size, None), base, size, classes, 0.2, augmentation)


@pytest.fixture(scope="module")
def reference_model() -> keras.Model:
    return transfer_model()


def test_reference_parameter_counts(reference_model: keras.Model):
    total, trainable = reference.PARAMS_TOTAL, reference.PARAMS_TRAINABLE_TRANSFER
    assert training.count_params(reference_model) == {"params.total": total, "params.trainable": trainable}
    assert (total, trainable) == (2_259_265, 1_281)  # the reference tutorial's printed summary


def test_fine_tune_counts_at_layer_100(reference_model: keras.Model, tmp_path: Path):
    reference_model.save(tmp_path / "t.keras")
    model = keras.models.load_model(tmp_path / "t.keras", safe_mode=True)
    models.unfreeze_from(model, BASES["mobilenet_v2"].fine_tune_at, "mobilenet_v2")
    trainable = reference.PARAMS_TRAINABLE_FINETUNE_100
    assert training.count_params(model) == {"params.total": reference.PARAMS_TOTAL, "params.trainable": trainable}
    assert trainable == 1_862_721 and len(model.trainable_variables) == 56


def test_fine_tune_step_keeps_batchnorm_statistics_and_frozen_layers(tmp_path: Path):
    model = transfer_model(size=96)
    models.unfreeze_from(model, 100, "mobilenet_v2")
    model.compile(keras.optimizers.RMSprop(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
    base = models.base_of(model)
    moving = [w for w in base.weights if "moving" in w.path]
    frozen = [w for layer in base.layers[:100] for w in layer.weights]
    unfrozen = [w for layer in base.layers[100:] for w in layer.trainable_weights]
    before = {id(w): w.numpy().copy() for w in moving + frozen + unfrozen}
    images = np.random.default_rng(0).uniform(0, 255, (4, 96, 96, 3)).astype("float32")
    model.train_on_batch(images, np.array([0, 1, 0, 1], "float32"))
    assert moving and all(np.array_equal(before[id(w)], w.numpy()) for w in moving)
    assert frozen and all(np.array_equal(before[id(w)], w.numpy()) for w in frozen)
    assert any(not np.array_equal(before[id(w)], w.numpy()) for w in unfrozen)  # and the step did train


def test_fine_tune_at_past_the_last_layer_names_the_range(reference_model: keras.Model):
    with pytest.raises(models.ModelError) as raised:
        models.unfreeze_from(reference_model, 154, "mobilenet_v2")
    assert str(raised.value) == (
        "model.fine_tune_at: 154 is past the base's layers; mobilenet_v2 has 154, so allowed values are 0 to 153 "
        "(its own choice: 100, or null for that)"
    )


def test_more_than_two_classes_get_one_logit_each(tmp_path: Path):
    model = transfer_model(size=32, classes=5)
    assert model.output_shape == (None, 5)
    assert training.count_params(model)["params.trainable"] == 1280 * 5 + 5  # the Dense head on 1,280 features


@pytest.mark.parametrize("base", ["resnet50", "vgg16", "efficientnet_b0"])
def test_other_bases_round_trip_with_safe_mode(base: str, tmp_path: Path):
    model = transfer_model(size=32, base=base)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5)
    assert training.count_params(loaded)["params.trainable"] == training.count_params(model)["params.trainable"]


def test_weights_none_and_missing_file():
    assert models.resolve_weights("mobilenet_v2", "none", 160, "transfer") is None
    with pytest.raises(models.ModelError, match="model.weights: nowhere.h5 is not a file"):
        models.resolve_weights("mobilenet_v2", "nowhere.h5", 160, "transfer")


def test_imagenet_offline_names_the_file_and_where_to_put_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    closed = dataclasses.replace(BASES["mobilenet_v2"], weights_url="http://127.0.0.1:9/")  # nothing listens on 9
    monkeypatch.setitem(BASES, "mobilenet_v2", closed)
    with pytest.raises(models.ModelError) as err:
        models.resolve_weights("mobilenet_v2", "imagenet", 160, "transfer")
    message = str(err.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5" in message
    assert str(tmp_path / "keras" / "models") in message and "model.weights: none" in message


def test_imagenet_uses_a_cached_file_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / BASES["mobilenet_v2"].weights_file(100)  # 100 px -> the 224 file
    assert cached.name.endswith("_1.0_224_no_top.h5")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    assert models.resolve_weights("mobilenet_v2", "imagenet", 100, "transfer") == "imagenet"


def test_weights_file_path_loads_those_weights(tmp_path: Path):
    source = models.build_base("mobilenet_v2", 96, None)
    source.save_weights(tmp_path / "base.weights.h5")
    path = models.resolve_weights("mobilenet_v2", str(tmp_path / "base.weights.h5"), 96, "transfer")
    loaded = models.build_base("mobilenet_v2", 96, path)
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded.get_weights()))
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(models.ModelError, match="cannot load .*bad.h5 into mobilenet_v2"):
        models.build_base("mobilenet_v2", 96, str(tmp_path / "bad.h5"))


def pooled_features(base: keras.Model, images) -> np.ndarray:
    return keras.ops.convert_to_numpy(keras.ops.mean(base(images, training=False), axis=(1, 2)))


def test_calibrate_batchnorm_sets_moving_statistics_to_the_batch_and_restores_momentum():
    base = models.build_base("mobilenet_v2", 32, None)
    preprocess = models.preprocessing(BASES["mobilenet_v2"])
    images = preprocess(np.random.default_rng(3).uniform(0, 255, (8, 32, 32, 3)).astype("float32"))
    before = pooled_features(base, images[:2])
    assert np.abs(before).max() < 1e-6  # Keras' mean 0 / variance 1: the signal has faded, all images alike
    models.calibrate_batchnorm(base, images)
    conv = keras.ops.convert_to_numpy(base.get_layer("Conv1")(images))  # what the first BatchNorm sees
    first = base.get_layer("bn_Conv1")
    np.testing.assert_allclose(first.moving_mean.numpy(), conv.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(first.moving_variance.numpy(), conv.var(axis=(0, 1, 2)), rtol=1e-4)
    after = pooled_features(base, images[:2])
    assert np.abs(after[0] - after[1]).max() > 0.1  # features now differ from image to image
    assert {layer.momentum for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)} == {0.999}
    base.trainable = False
    with pytest.raises(ValueError, match="frozen"):  # a frozen BatchNorm runs in inference mode: no silent no-op
        models.calibrate_batchnorm(base, images)


def test_augmented_features_are_a_new_random_view_each_pass_and_plain_ones_are_fixed():
    size = 32
    base = models.build_base("mobilenet_v2", size, None)
    images = np.random.default_rng(5).uniform(0, 255, (8, size, size, 3)).astype("float32")
    models.calibrate_batchnorm(base, models.preprocessing(BASES["mobilenet_v2"])(images))  # features that differ
    flip = dataclasses.replace(NO_AUGMENT, flip="horizontal")
    augmentation = augment.build_augmentation(flip, seed=0)
    model = models.build_transfer_model(base, "mobilenet_v2", size, 2, 0.2, augmentation)
    feature_model = keras.Model(model.input, model.get_layer(models.FEATURES_LAYER_NAME).output)
    batches = tf.data.Dataset.from_tensors((images, np.zeros(8)))
    plain = [models.features(feature_model, batches)[0] for _ in range(2)]
    views = [models.features(feature_model, batches, augmented=True)[0] for _ in range(3)]
    np.testing.assert_array_equal(plain[0], plain[1])
    mirrored = models.features(feature_model, tf.data.Dataset.from_tensors((images[:, :, ::-1], np.zeros(8))))[0]
    for view in views:  # each image as it is or mirrored, as the flip drew
        as_is, flipped = (np.abs(view - f).max(axis=1) < 1e-4 for f in (plain[0], mirrored))
        assert (as_is | flipped).all()
    assert any(np.abs(a - b).max() > 1e-3 for a, b in zip(views, views[1:]))  # other draws on other passes


def test_caffe_preprocessing_is_keras_own_layer_and_exact():
    """ResNet50 / VGG16 preprocessing (BGR minus the ImageNet means) as a frozen 1x1 Conv2D, which plain Keras
    loads: the same numbers as computing it by hand, to the bit."""
    layer = models.caffe_preprocessing()
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = images[..., ::-1] - np.asarray(models.CAFFE_MEAN_BGR, dtype="float32")
    assert np.array_equal(np.asarray(layer(images)), expected)
    assert type(layer).__module__.startswith("keras.") and not layer.trainable_weights
