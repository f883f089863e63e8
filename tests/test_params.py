from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from stages.lib import params
from tests.conftest import ROOT


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repository_params_file_is_valid():
    p = params.load(ROOT / "params.yaml")
    assert p.data.source == "cats_and_dogs_filtered"
    assert p.split.test_fraction == 0.2
    assert {"seed", "data.source", "split.test_fraction", "encode.image_size"} <= params.all_keys(p)


def test_params_are_frozen():
    p = params.load(ROOT / "params.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.split.test_fraction = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("seed", -1, "seed: Input should be greater than or equal to 0"),
        ("seed", "42", "seed: Input should be a valid integer"),
        ("seed", True, "seed: Input should be a valid integer"),
        ("split.test_fraction", 0, "split.test_fraction: Input should be greater than 0"),
        ("split.test_fraction", 1.0, "split.test_fraction: Input should be less than 1"),
        ("split.test_fraction", "0.2", "split.test_fraction: Input should be a valid number"),
        ("encode.image_size", 16, "encode.image_size: must be 0 (keep original sizes) or between 32 and 1024"),
        ("encode.image_size", 4096, "encode.image_size: must be 0"),
        ("encode.jpeg_quality", 101, "encode.jpeg_quality: Input should be less than or equal to 100"),
        ("encode.examples_per_shard", 0, "encode.examples_per_shard: Input should be greater than or equal to 1"),
        ("data.source", "ftp://host/a", "data.source: must be an http(s) URL, a local archive path or a dataset name"),
        ("data.source", "ftp://host/a.zip", "data.source: must be"),
        ("data.sha256", "abc", "data.sha256: must be null or 64 hex digits"),
        ("data.sample_train_per_class", 1, "data.sample_train_per_class: Input should be greater than or equal to 2"),
        ("data.max_archive_bytes", 2.5, "data.max_archive_bytes: Input should be a valid integer"),
        ("split.warn_aspect_ratio", 1, "split.warn_aspect_ratio: Input should be greater than 1"),
        ("split.warn_aspect_ratio", "10", "split.warn_aspect_ratio: Input should be a valid number"),
        ("split.warn_min_side", 0, "split.warn_min_side: Input should be greater than or equal to 1"),
        ("split.warn_min_side", 8.5, "split.warn_min_side: Input should be a valid integer"),
        ("export.representative_images", 0, "export.representative_images: Input should be greater than or equal to 1"),
        ("export.max_accuracy_drop", -0.1, "export.max_accuracy_drop: Input should be greater than or equal to 0"),
        ("export.int8_per_channel", "yes", "export.int8_per_channel: Input should be a valid boolean"),
        ("export.latency_runs", 0, "export.latency_runs: Input should be greater than or equal to 1"),
        ("export.latency_warmup", 1.5, "export.latency_warmup: Input should be a valid integer"),
    ],
)
def test_bad_value_names_key_and_rule(key: str, value, expected: str):
    raw = raw_params()
    section, _, leaf = key.rpartition(".")
    (raw[section] if section else raw)[leaf] = value
    with pytest.raises(params.ParamsError) as err:
        params.parse(raw, "params.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("params.yaml: ")


@pytest.mark.parametrize(
    "source",
    ["sample", "cats_and_dogs_filtered", "https://example.org/a.zip", "archives/x.tar.gz", "/abs/y.TGZ", "z.tar"],
)
def test_accepted_sources(source: str):
    raw = raw_params()
    raw["data"]["source"] = source
    assert params.parse(raw).data.source == source


def test_sha256_pin_is_normalised_to_lower_case():
    raw = raw_params()
    raw["data"]["sha256"] = "AB" * 32
    assert params.parse(raw).data.sha256 == "ab" * 32


def test_unknown_and_missing_keys_are_named():
    raw = raw_params()
    raw["split"]["test_fracton"] = 0.3  # a typo must not be silently ignored
    raw["epochs"] = 3
    del raw["encode"]["jpeg_quality"]
    with pytest.raises(params.ParamsError) as err:
        params.parse(raw)
    message = str(err.value)
    assert "split.test_fracton: unknown key" in message
    assert "epochs: unknown key" in message
    assert "encode.jpeg_quality: missing" in message


def test_load_errors_name_the_file(tmp_path: Path):
    with pytest.raises(params.ParamsError, match="nothere.yaml: not found"):
        params.load(tmp_path / "nothere.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(params.ParamsError, match="bad.yaml:2:1: not valid YAML"):
        params.load(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(params.ParamsError, match="bad.yaml: expected a mapping"):
        params.load(bad)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "model.base",
            "inception",
            "params.yaml: model.base: must be one of mobilenet_v2, resnet50, vgg16, efficientnet_b0 (got 'inception')",
        ),
        ("model.image_size", 31, "params.yaml: model.image_size: Input should be greater than or equal to 32"),
        (
            "train.strategy",
            "tpu",
            "params.yaml: train.strategy: Input should be 'auto', 'mirrored', 'multi_worker' or 'none' (got 'tpu')",
        ),
        ("transfer.augment", {"flip": "diagonal"}, "params.yaml: transfer.augment.flip: Input should be 'none'"),
        ("model.fine_tune_at", -1, "params.yaml: model.fine_tune_at: Input should be greater than or equal to 0"),
        ("model.calibration_images", 1, "params.yaml: model.calibration_images: must be 0 (keep Keras' default"),
        ("model.calibration_images", -2, "params.yaml: model.calibration_images: must be 0"),
        ("model.calibration_images", 2.5, "params.yaml: model.calibration_images: Input should be a valid integer"),
        ("transfer.epochs", 0, "params.yaml: transfer.epochs: Input should be greater than or equal to 1"),
        ("finetune.lr_factor", 0, "params.yaml: finetune.lr_factor: Input should be greater than 0"),
        ("transfer.cache_features", "yes", "params.yaml: transfer.cache_features: Input should be a valid boolean"),
        ("train.join_timeout", 0, "params.yaml: train.join_timeout: Input should be greater than or equal to 1"),
    ],
)
def test_training_params_errors_are_one_line(key: str, value, expected: str):
    raw = raw_params()
    section, _, leaf = key.rpartition(".")
    target = raw
    for part in section.split("."):
        target = target[part]
    target[leaf] = value if not isinstance(value, dict) else {**target[leaf], **value}
    with pytest.raises(params.ParamsError) as err:
        params.parse(raw, "params.yaml")
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("count", [0, 2, 256])
def test_calibration_images_accepts_zero_or_at_least_two(count: int):
    raw = raw_params()
    raw["model"]["calibration_images"] = count
    assert params.parse(raw).model.calibration_images == count


def test_stored_size_must_cover_every_training_size():
    raw = raw_params()
    raw["encode"]["image_size"] = 128  # model.image_size is 160
    with pytest.raises(params.ParamsError, match="encode.image_size: 128 is smaller than .* \\(160"):
        params.parse(raw)
    raw["encode"]["image_size"] = 0  # originals: resized in the pipeline, always large enough
    assert params.parse(raw).encode.image_size == 0


def test_fine_tune_at_null_means_the_base_s_own_choice():
    raw = raw_params()
    raw["model"]["fine_tune_at"] = None
    assert params.parse(raw).model.fine_tune_at is None  # finetune then takes bases.BASES[base].fine_tune_at


def test_the_schema_imports_no_registry_of_code():
    """The config layer points down: params.py checks names against plain-data tables (bases.py, architectures.py),
    never against modules that build models, draw or download (their stages check those keys)."""
    import ast

    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(Path(params.__file__).read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    for module in ("cnns", "sources", "sample", "drawing", "models", "fetch"):
        assert not any(module in (name or "").split(".") for name in imported), module


@pytest.mark.parametrize(
    ("arch", "image_size", "expected"),
    [
        ("lenet", 100, "params.yaml: baseline.arch: must be one of simple_cnn, alexnet, vgg16, googlenet, resnet18 "
                       "(got 'lenet')"),
        ("alexnet", 64, "params.yaml: baseline.image_size: alexnet needs images of at least 67x67 px, got 64"),
    ],
)  # fmt: skip
def test_the_baseline_architecture_and_its_size_are_checked_against_the_table_on_load(arch, image_size, expected):
    """architectures.py is plain data: the schema checks the name and the size as it checks model.base's."""
    raw = raw_params()
    raw["encode"]["image_size"] = 0
    raw["baseline"].update(arch=arch, image_size=image_size)
    with pytest.raises(params.ParamsError) as err:
        params.parse(raw, "params.yaml")
    assert str(err.value) == expected
    raw["baseline"].update(arch="alexnet", image_size=67)  # its minimum is enough
    assert params.parse(raw).baseline.arch == "alexnet"


def test_a_baseline_may_train_below_32_px_down_to_its_architecture_s_minimum():
    """MNIST's 28 px images: simple_cnn needs 10 px; pretrained bases keep their 32 px floor."""
    raw = raw_params()
    raw["encode"]["image_size"] = 0
    raw["baseline"]["image_size"] = 28
    assert params.parse(raw).baseline.image_size == 28
    raw["model"]["image_size"] = 28
    with pytest.raises(params.ParamsError, match="model.image_size: Input should be greater than or equal to 32"):
        params.parse(raw)


def test_an_alias_bomb_gives_a_short_message_not_its_expansion(tmp_path: Path):
    anchors = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    anchors += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]  # 9**9 'x' if printed
    bomb = tmp_path / "params.yaml"
    bomb.write_text("\n".join(anchors) + "\n" + (ROOT / "params.yaml").read_text().replace("seed: 42", "seed: *a8"))
    with pytest.raises(params.ParamsError) as caught:
        params.load(bomb)
    message = str(caught.value)
    assert "seed: Input should be a valid integer" in message and "a8: unknown key" in message
    assert len(message) < 2000


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            {"finetune": {"warmup_epochs": 10}},
            "params.yaml: finetune.warmup_epochs: 10 leaves no epoch after the warmup (finetune.epochs is 10)",
        ),
        (
            {"transfer": {"augmented_views": 11}},
            "params.yaml: transfer.augmented_views: 11 views of each image are more than the 10 epochs "
            "(transfer.epochs) can train on, and more passes of the base than computing a new view every epoch "
            "(augmented_views: 0)",
        ),
        (
            {"train": {"patience": 3}},
            "params.yaml: train.patience: 3 needs train.keep_best to name the val metric it watches "
            "(val_loss, val_accuracy)",
        ),
        (
            {"train": {"keep_best": "accuracy"}},
            "params.yaml: train.keep_best: Input should be 'none', 'val_loss' or 'val_accuracy' (got 'accuracy')",
        ),
        (
            {"baseline": {"lr_schedule": "step"}},
            "params.yaml: baseline.lr_schedule: Input should be 'constant' or 'cosine'",
        ),
        ({"train": {"label_smoothing": 1.0}}, "params.yaml: train.label_smoothing: Input should be less than 1"),
    ],
)
def test_recipe_options_are_checked_against_each_other(sections: dict, expected: str):
    raw = raw_params()
    for section, values in sections.items():
        raw[section].update(values)
    with pytest.raises(params.ParamsError) as caught:
        params.parse(raw, "params.yaml")
    assert str(caught.value).startswith(expected)


def test_the_recipe_options_default_to_the_reference():
    p = params.load(ROOT / "params.yaml")
    assert (p.train.keep_best, p.train.patience, p.train.label_smoothing) == ("none", 0, 0.0)
    for section in (p.baseline, p.transfer, p.finetune):
        assert (section.lr_schedule, section.warmup_epochs) == ("constant", 0)


def test_jit_compile_is_no_param_any_more():
    # It did nothing: Keras compiles no model with XLA under the op determinism every stage turns on (it printed
    # "Model doesn't support jit_compile=True"), and with determinism off XLA trained MobileNetV2 12-17x slower on
    # this CPU (benchmarks/precision.py).
    raw = raw_params()
    raw["train"]["jit_compile"] = True
    with pytest.raises(params.ParamsError) as err:
        params.parse(raw, "params.yaml")
    assert str(err.value) == "params.yaml: train.jit_compile: unknown key"
