"""Where a model's base came from: the description beside a weights file (read once, by `read`), quoted only for
those very bytes, and the limits of each kind of base."""

from __future__ import annotations

import json
from pathlib import Path

from stages.lib import chance, model_origin
from tests.conftest import ROOT

ABOUT = {"weights": "base.weights.h5", "sha256": "ab" * 32, "base": "MobileNetV2", "seconds": 600,
         "settings": {"epochs": 10, "size": 64}, "held_out_accuracy": 0.95,
         "source_task": {"classes": ["rabbits", "bears"], "excluded_target_classes": ["cats", "dogs"],
                         "train_images": 100, "held_out_images": 10, "generator": "a drawing function"}}  # fmt: skip


read = model_origin.read  # weights, their sha256 -> BaseWeights, with the description beside the file


def write_base(folder: Path, about: object) -> str:
    weights = folder / "base.weights.h5"
    weights.write_bytes(b"weights")
    (folder / "base.json").write_text(json.dumps(about))
    return str(weights)


def test_base_origin_quotes_only_a_description_of_these_very_weights(tmp_path: Path):
    weights = write_base(tmp_path, ABOUT)
    text = " ".join(model_origin.base_origin(read(weights, "ab" * 32), ["cats", "dogs"]))
    assert "2 other classes (rabbits, bears; never cats, dogs)" in text and "was among" not in text
    assert "were among its source classes" in " ".join(
        model_origin.base_origin(read(weights, "ab" * 32), ["cats", "rabbits"])
    )
    assert "other bytes" in " ".join(model_origin.base_origin(read(weights, "cd" * 32), ["cats", "dogs"]))
    for unrelated in ([1, 2], {"weights": "other.weights.h5"}, {"format": "keras"}):  # e.g. Keras' own model.json
        described = " ".join(model_origin.base_origin(read(write_base(tmp_path, unrelated), "ab" * 32), []))
        assert "described nowhere" in described
    assert (
        model_origin.base_origin(read("imagenet", "ef" * 32), ["cats"])
        == model_origin.base_origin(read("none", "none"), [])
        == []
    )


def test_base_limits_follow_the_weights(tmp_path: Path):
    weights = write_base(tmp_path, ABOUT)
    limits = model_origin.base_limits(read(weights, "ab" * 32))
    assert "100 generated images (`a drawing function`) at 64 px" in limits and "real photos" in limits
    assert "not recorded" in model_origin.base_limits(read(weights, "cd" * 32))  # a description of other bytes
    assert "1,000 classes" in model_origin.base_limits(read("imagenet", "ef" * 32))
    assert "random" in model_origin.base_limits(read("none", "none"))


def test_the_bundled_base_is_described_by_its_own_file(monkeypatch):
    monkeypatch.chdir(ROOT)  # model.weights is relative to the project root
    about = json.loads(Path("pretrained/mobilenet_v2_animals.json").read_text())
    weights = "pretrained/mobilenet_v2_animals.weights.h5"
    assert read(weights, about["sha256"]).described == about
    limits = model_origin.base_limits(read(weights, about["sha256"]))
    assert f"{about['source_task']['train_images']:,} generated images" in limits and "at 96 px" in limits


def test_transfer_below_the_cnn_has_a_known_cause_only_where_the_weights_say_so(tmp_path: Path):
    """Issue 33: offline on real photos, transfer from the bundled base lost to the CNN from scratch, and nothing
    said why."""
    weights = write_base(tmp_path, ABOUT)
    cause = model_origin.weak_transfer_cause(read(weights, "ab" * 32))
    assert "pretrained by this project on 2 kinds of generated drawings" in cause
    assert "model.weights: imagenet" in cause and model_origin.IMAGENET_OFFLINE_DOCS in cause
    assert model_origin.weak_transfer_cause(read("none", "none")) == chance.RANDOM_WEIGHTS
    assert model_origin.weak_transfer_cause(read("imagenet", "ef" * 32)) is None  # not known: nothing claimed
    assert model_origin.weak_transfer_cause(read(weights, "cd" * 32)) is None  # a description of other bytes


def test_the_docs_hold_the_heading_a_cause_points_at():
    page, heading = model_origin.IMAGENET_OFFLINE_DOCS.split("#")
    headings = [line.lstrip("#").strip().lower().replace(" ", "-") for line in (ROOT / page).read_text().splitlines()
                if line.startswith("#")]  # fmt: skip
    assert heading in headings
