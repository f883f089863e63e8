"""The baseline CNNs' builders: each builds at its smallest size and takes a training step, one pixel smaller it
cannot be built, parameter counts are those of architectures.py's table, outputs are logits, models round-trip
through .keras with safe_mode=True, and the augmentation hook is inactive at inference."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from stages.lib import cnns
from stages.lib.architectures import ARCHITECTURES
from stages.lib.cnns import AUX_LOSS_WEIGHT, VGG16_BLOCKS


def build(arch, size, augmentation=None):
    """The inference model for two classes (one logit), as the baseline stage builds it for cats vs dogs."""
    return cnns.build(arch, size, 2, augmentation)


def build_for_training(arch, size, augmentation=None):
    return cnns.build_for_training(arch, size, 2, augmentation)


ARCHS = ["simple_cnn", "alexnet", "vgg16", "googlenet", "resnet18"]
# The table's counts: (image size, count_params()) at each architecture's minimum, and at its documented size.
TINY = {
    arch: (ARCHITECTURES[arch].min_size, ARCHITECTURES[arch].parameters[ARCHITECTURES[arch].min_size]) for arch in ARCHS
}
FULL = {arch: max(ARCHITECTURES[arch].parameters.items()) for arch in ARCHS}
GOOGLENET_WITH_AUX = {65: 6_374_195, 224: 10_306_355}


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Float32 RGB in [0, 255], what the input pipeline yields."""
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def labels(batch: int) -> np.ndarray:
    return (np.arange(batch) % 2).reshape(batch, 1).astype("float32")


def compile_for_one_step(models, learning_rate: float = 1e-4) -> None:
    # Eager: tracing the training graph of GoogLeNet alone takes ~25 s on 2 cores, one eager step ~2 s.
    models.compile(
        keras.optimizers.Adam(learning_rate), keras.losses.BinaryCrossentropy(from_logits=True), run_eagerly=True
    )


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))  # eager; predict() would trace a graph


def test_every_architecture_of_the_table_has_its_builder():
    assert list(cnns.BUILDERS) == list(ARCHITECTURES) == ARCHS
    assert FULL["simple_cnn"] == (100, 8_743_041)  # Exercise 3.03 at its 100 px: "more than 8,700,000"


@pytest.mark.slow  # builds and steps every architecture
@pytest.mark.parametrize("arch", ARCHS)
def test_builds_at_its_minimum_size_and_trains_one_step(arch):
    keras.utils.set_random_seed(0)
    size, params = TINY[arch]
    models = build_for_training(arch, size)
    model = models.inference
    assert model.name == arch
    assert model.input_shape == (None, size, size, 3)
    assert isinstance(model.layers[1], keras.layers.Rescaling)  # right after the Input
    assert model.count_params() == params

    compile_for_one_step(models)
    x, y = images(2, size), labels(2)
    logs = models.train.train_on_batch(*models.targets(x, y), return_dict=True)
    assert math.isfinite(logs["loss"])
    if arch == "googlenet":
        assert models.train is not model and len(models.train.outputs) == 3
        assert models.loss_weights == [1.0, AUX_LOSS_WEIGHT, AUX_LOSS_WEIGHT] == [1.0, 0.3, 0.3]
        weighted = logs["logit_loss"] + 0.3 * (logs["aux1_logit_loss"] + logs["aux2_logit_loss"])
        assert logs["loss"] == pytest.approx(weighted, rel=1e-5)
    else:
        assert models.train is model and models.loss_weights is None

    assert predict(model, x).shape == (2, 1)


@pytest.mark.parametrize("arch", ARCHS)
def test_output_is_a_logit_from_a_plain_dense_1(arch):
    size = TINY[arch][0]
    model = build(arch, size)
    (head,) = [layer for layer in model.layers if layer.output is model.outputs[0]]
    assert isinstance(head, keras.layers.Dense) and head.units == 1
    assert head.get_config()["activation"] == "linear"
    # A zero kernel and bias -3 give exactly -3 for every image: no sigmoid squashes it into (0, 1).
    head.set_weights([np.zeros_like(head.kernel), np.full((1,), -3.0, "float32")])
    np.testing.assert_allclose(predict(model, images(3, size)), np.full((3, 1), -3.0))


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "vgg16"])
def test_parameter_count_at_the_documented_size(arch):
    size, params = FULL[arch]
    assert build(arch, size).count_params() == params


def test_vgg16_count_at_224_follows_from_the_tiny_model():
    # Only the first Dense depends on the size: 224 px gives 7x7x512 inputs to it, 32 px gives 1x1x512.
    assert VGG16_BLOCKS == ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # 13 convolutions
    tiny = TINY["vgg16"][1]
    assert FULL["vgg16"][0] == 224 and tiny + (7 * 7 - 1) * 512 * 4096 == FULL["vgg16"][1]


@pytest.mark.parametrize("size", sorted(GOOGLENET_WITH_AUX))
def test_googlenet_training_model_counts_include_both_aux_heads(size):
    models = build_for_training("googlenet", size)
    assert models.train.count_params() == GOOGLENET_WITH_AUX[size]
    assert models.inference.count_params() == TINY["googlenet"][1]
    assert models.train.output_names == ["logit", "aux1_logit", "aux2_logit"]


@pytest.mark.parametrize("arch", [arch for arch in ARCHS if arch != "resnet18"])  # resnet18's is a policy
def test_one_pixel_below_its_minimum_the_network_cannot_be_built(arch):
    """The table's minimum is the network's: a layer would get an empty input."""
    with pytest.raises(ValueError):
        build(arch, ARCHITECTURES[arch].min_size - 1)


@pytest.mark.slow  # builds and steps every architecture
@pytest.mark.parametrize("arch", ["simple_cnn", "googlenet"])
def test_inference_model_round_trips_through_keras_file_in_safe_mode(arch, tmp_path):
    keras.utils.set_random_seed(1)
    size = TINY[arch][0]
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal")], name="augmentation")
    models = build_for_training(arch, size, augmentation)
    x = images(4, size, seed=1)
    before = predict(models.inference, x)
    compile_for_one_step(models, learning_rate=1e-3)
    models.train.train_on_batch(*models.targets(x, labels(4)))
    after = predict(models.inference, x)
    assert not np.allclose(before, after)  # training `train` trained the weights `inference` uses

    path = tmp_path / f"{arch}.keras"
    models.inference.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(predict(loaded, x), after, rtol=1e-5, atol=1e-6)
    assert loaded.name == arch and len(loaded.outputs) == 1
    assert not [layer.name for layer in loaded.layers if layer.name.startswith("aux")]
    assert loaded.count_params() == TINY[arch][1]
    assert isinstance(loaded.get_layer("augmentation"), keras.Sequential)


def test_augmentation_is_in_the_model_and_inactive_at_inference():
    keras.utils.set_random_seed(2)
    size = 16
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=3)], name="augmentation")
    model = build("simple_cnn", size, augmentation)
    plain = build("simple_cnn", size)
    plain.set_weights(model.get_weights())
    assert model.layers[1] is augmentation and isinstance(model.layers[2], keras.layers.Rescaling)

    x = images(8, size, seed=2)
    expected = predict(plain, x)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-5, atol=1e-6)
    # In training the flips happen (simple_cnn has no dropout or BatchNorm, so that is the only difference).
    assert not np.allclose(model(x, training=True), expected, rtol=1e-5, atol=1e-6)


def test_augmentation_must_be_a_layer():
    with pytest.raises(TypeError, match="augmentation must be a keras Layer"):
        build("simple_cnn", 16, augmentation="flip")


@pytest.mark.slow  # builds and steps every architecture
@pytest.mark.parametrize("arch", ARCHS)
def test_more_classes_give_one_logit_each(arch):
    size = TINY[arch][0]
    models = cnns.build_for_training(arch, size, 7)
    assert models.inference.output_shape == (None, 7)
    assert all(output.shape[-1] == 7 for output in models.train.outputs)  # GoogLeNet's auxiliary heads too
