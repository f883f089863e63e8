"""Model files: custom layers round-trip with safe_mode, atomic saves, one-line load errors naming the stage."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from stages.lib import files, saving
from stages.lib.errors import MissingInput, PipelineError


def wrapped_model() -> keras.Model:
    inner = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.BatchNormalization()], name="inner")
    inputs = keras.Input((4, 4, 3))
    x = saving.CaffePreprocess(name="preprocess")(inputs)
    x = saving.InferenceMode(inner, name="base")(x)
    return keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))


def test_custom_layers_round_trip_with_safe_mode(tmp_path: Path):
    model = wrapped_model()
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    saving.save_model(model, tmp_path / "m.keras")
    loaded = saving.load_model(tmp_path / "m.keras", "transfer")
    np.testing.assert_allclose(loaded(images, training=False), model(images, training=False), rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary left


def test_caffe_preprocessing_flips_to_bgr_and_subtracts_the_means():
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], "float32")
    out = keras.ops.convert_to_numpy(saving.CaffePreprocess()(pixel))
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_inference_mode_keeps_batchnorm_statistics_in_training():
    model = wrapped_model()
    batchnorm = model.get_layer("base").layer.layers[0]
    images = np.random.default_rng(1).uniform(0, 255, (8, 4, 4, 3)).astype("float32")
    model(images, training=True)
    assert not batchnorm.moving_mean.numpy().any()  # unchanged: the wrapped model ran in inference mode


def test_missing_and_damaged_models_are_one_line_naming_the_stage(tmp_path: Path):
    with pytest.raises(MissingInput, match=r"missing; run the finetune stage first \(dvc repro finetune\)"):
        saving.load_model(tmp_path / "finetune.keras", "finetune")
    saving.save_model(wrapped_model(), tmp_path / "finetune.keras")
    data = (tmp_path / "finetune.keras").read_bytes()
    (tmp_path / "finetune.keras").write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(PipelineError) as err:
        saving.load_model(tmp_path / "finetune.keras", "finetune")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'finetune.keras'}: not a readable Keras model (")
    assert message.endswith("; re-run the finetune stage (dvc repro finetune)") and "\n" not in message


@pytest.mark.parametrize("content", [b"", b"not a model", None], ids=["zero-byte", "text", "truncated"])
def test_a_damaged_model_file_is_not_reported_as_missing(tmp_path: Path, content: bytes | None):
    """Seen by a new user (issue 33): a truncated .keras file was reported with Keras' "File not found", though the
    file was there. Keras says so for any .keras file that is not a zip archive."""
    path = tmp_path / "model.keras"
    saving.save_model(wrapped_model(), path)
    path.write_bytes(path.read_bytes()[:300] if content is None else content)
    with pytest.raises(PipelineError) as err:
        saving.load_model(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a readable Keras model (a .keras file is a zip archive, and this one is ")
    assert "not found" not in message.lower() and "\n" not in message


def test_a_failed_save_leaves_the_previous_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    saving.save_model(wrapped_model(), tmp_path / "m.keras")
    before = (tmp_path / "m.keras").read_bytes()

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError):
        saving.save_model(wrapped_model(), tmp_path / "m.keras")
    assert (tmp_path / "m.keras").read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_a_save_removes_the_temporary_file_a_killed_save_left(tmp_path: Path):
    (tmp_path / ".m.tmp4242.keras").write_bytes(b"half a model")
    saving.save_model(wrapped_model(), tmp_path / "m.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


@pytest.mark.parametrize("units", [1, 3])
def test_flip_averaged_gives_the_mean_of_the_image_and_mirror_probabilities(units: int, tmp_path: Path):
    from stages.lib import heads

    inputs = keras.Input((4, 6, 3))
    model = keras.Model(inputs, keras.layers.Dense(units)(keras.layers.Flatten()(inputs)))  # not mirror-symmetric
    images = np.random.default_rng(1).uniform(0, 1, (5, 4, 6, 3)).astype("float32")
    mirrored = images[:, :, ::-1, :]
    expected = (heads.probabilities(model(images)) + heads.probabilities(model(mirrored))) / 2
    tta = saving.with_test_time_augmentation(model, "flip")
    assert np.allclose(heads.probabilities(tta(images)), expected, atol=1e-5)
    assert tta.output_shape == model.output_shape  # logits still: whatever reads them is unchanged
    assert not np.allclose(heads.probabilities(model(images)), expected, atol=1e-3)  # the mirror made a difference
    saving.save_model(tta, tmp_path / "tta.keras")  # registered: loads with safe_mode, as an export needs
    assert np.allclose(saving.load_model(tmp_path / "tta.keras")(images), tta(images), atol=1e-6)
    assert saving.with_test_time_augmentation(model, "none") is model


def test_a_model_saved_under_the_former_package_name_still_loads(tmp_path: Path):
    """Models saved before the rename record `catsdogs>InferenceMode`: they load as they did."""
    inner = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1)], name="inner")
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, saving.InferenceMode(inner, name="base")(inputs))
    model.save(tmp_path / "new.keras")
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for info in new.infolist():
            data = new.read(info)
            if info.filename == "config.json":
                assert b'"imagefolder>InferenceMode"' in data
                data = data.replace(b'"imagefolder>', b'"catsdogs>')
            old.writestr(info, data)
    loaded = saving.load_model(tmp_path / "old.keras")
    assert isinstance(loaded.get_layer("base"), saving.InferenceMode)
    images = np.ones((1, 4, 4, 3), "float32")
    assert np.array_equal(np.asarray(loaded(images)), np.asarray(model(images)))


def test_saving_names_its_temporary_as_files_finds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """saving.py's temporary name and files.TEMPORARIES are one fact in two modules: held together here."""
    seen = []
    saving._save_atomically(
        tmp_path / "transfer.keras", ".keras", lambda tmp: seen.append(tmp) or tmp.write_bytes(b"x")
    )
    pattern = files.TEMPORARIES[1].format(name="transfer.keras", stem="transfer", suffix=".keras")
    assert seen[0].match(pattern) and seen[0].name == f".transfer.tmp{os.getpid()}.keras"
