from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import encode as encode_stage
from stages import split as split_stage
from stages.lib import records
from stages.lib.errors import PipelineError
from tests.conftest import dvc_args, jpeg_bytes, make_raw_tree, set_params


@pytest.fixture
def encoded(project: Path) -> Path:
    """A project with raw data, splits and records (32 px, 5 examples per shard)."""
    raw = make_raw_tree(project / "data" / "raw", train_per_class=6, validation_per_class=10)
    (raw / "train" / "cats" / "gray.jpg").write_bytes(jpeg_bytes(500, size=(64, 48), mode="L"))
    (raw / "train" / "dogs" / "alpha.png").write_bytes(jpeg_bytes(501, size=(30, 70), mode="RGBA", fmt="PNG"))
    set_params(
        project,
        encode={"image_size": 32, "examples_per_shard": 5},
        model={"image_size": 32},
        baseline={"image_size": 32},
    )
    split_stage.main(dvc_args("split"))
    view = encode_stage.main(dvc_args("encode"))
    assert view.read == set(encode_stage.PARAMS)
    return project / "data" / "tfrecords"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_serialize_round_trip():
    record = records.Record(jpeg_bytes(1, size=(8, 8)), 1, "train/dogs/dog.1.jpg", 8, 8)
    features = records.parse(records.serialize(record))
    assert features["image"].numpy() == record.image
    assert int(features["label"]) == 1 and features["path"].numpy().decode() == record.path
    assert (int(features["height"]), int(features["width"])) == (8, 8)


def test_meta_and_shards(encoded: Path):
    meta = records.read_meta(encoded)
    assert meta["class_names"] == ["cats", "dogs"]
    assert meta["image_size"] == 32
    train = meta["splits"]["train"]
    assert train["count"] == 14 and train["per_class"] == {"cats": 7, "dogs": 7}
    assert train["shards"] == {
        name: hashlib.sha256((encoded / name).read_bytes()).hexdigest()
        for name in ("train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord", "train-00002-of-00003.tfrecord")
    }
    val, test = meta["splits"]["val"]["count"], meta["splits"]["test"]["count"]
    assert val + test == 20 and test >= 2  # 10 validation images a class, val and test drawn image by image
    names = {p.name for p in encoded.iterdir()}
    assert names == {records.META_FILE} | {s for info in meta["splits"].values() for s in info["shards"]}


def test_dataset_round_trip_matches_the_split_csv(encoded: Path, project: Path):
    import pandas as pd

    expected = pd.read_csv(project / "data" / "splits" / "val.csv")
    batches = list(records.make_dataset(encoded, "val", image_size=32, batch_size=6, with_paths=True))
    count = len(expected)
    assert [len(b[0]) for b in batches] == [6] * (count // 6) + ([count % 6] if count % 6 else [])
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    paths = [p.decode() for b in batches for p in b[2].numpy()]
    assert images.shape == (count, 32, 32, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.std() > 10
    assert paths == expected["path"].tolist()  # val keeps the stored (sorted) order
    assert labels.tolist() == expected["label_index"].tolist()
    # The stored image is the source image squashed to 32x32: compare with Pillow's own resize.
    source = Image.open(project / "data" / "raw" / paths[0]).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    assert np.abs(images[0] - np.asarray(source, np.float32)).mean() < 12  # JPEG noise only


def test_converted_images_are_rgb_in_records(encoded: Path):
    dataset = records.make_dataset(encoded, "train", image_size=32, batch_size=32, with_paths=True)
    images, _, paths = next(iter(dataset))
    by_path = dict(zip([p.decode() for p in paths.numpy()], images.numpy()))
    assert by_path["train/cats/gray.jpg"].shape == (32, 32, 3)
    gray = by_path["train/cats/gray.jpg"]
    assert np.abs(gray[..., 0] - gray[..., 1]).max() < 8  # grayscale stays gray after conversion to RGB


def test_requested_size_is_resized_in_the_pipeline(encoded: Path):
    images, labels = next(iter(records.make_dataset(encoded, "test", image_size=48, batch_size=4)))
    assert images.shape == (4, 48, 48, 3) and labels.shape == (4,)


@pytest.mark.parametrize("cache", [False, True])
def test_train_shuffle_is_seeded_and_reshuffles_each_epoch(encoded: Path, cache: bool):
    def epoch_orders(seed: int) -> list[list[str]]:
        dataset = records.make_dataset(
            encoded, "train", image_size=32, batch_size=14, shuffle_seed=seed, with_paths=True, cache=cache
        )
        return [[p.decode() for p in batch[2].numpy()] for batch in dataset.repeat(2)]

    first, second = epoch_orders(3)
    assert sorted(first) == sorted(second) and first != second
    assert epoch_orders(3) == [first, second]


def test_unknown_split_and_missing_meta(encoded: Path, tmp_path: Path):
    with pytest.raises(KeyError, match="no split 'holdout'"):
        records.make_dataset(encoded, "holdout", image_size=32, batch_size=2)
    with pytest.raises(FileNotFoundError, match="run the encode stage first"):
        records.read_meta(tmp_path / "nothing")


def test_encode_is_byte_deterministic(encoded: Path, project: Path):
    first = digests(encoded)
    encode_stage.main(dvc_args("encode"))
    assert digests(encoded) == first
    meta = json.loads((encoded / records.META_FILE).read_text())
    assert meta["jpeg_quality"] == 95


def test_train_shards_mix_classes(encoded: Path):
    dataset = records.make_dataset(encoded, "train", image_size=32, batch_size=5)  # batch 5 = one shard, in order
    first_shard_labels = next(iter(dataset))[1].numpy()
    assert 0 < first_shard_labels.sum() < 5


def test_original_size_policy_keeps_rgb_jpeg_bytes(project: Path):
    raw = make_raw_tree(project / "data" / "raw", train_per_class=3, validation_per_class=5)
    set_params(project, encode={"image_size": 0})
    split_stage.main(dvc_args("split"))
    encode_stage.main(dvc_args("encode"))
    dataset = records.make_dataset(project / "data" / "tfrecords", "test", image_size=40, batch_size=8, with_paths=True)
    for serialized in records.tf.data.TFRecordDataset(
        str(project / "data" / "tfrecords" / "test-00000-of-00001.tfrecord")
    ):
        features = records.parse(serialized)
        path = features["path"].numpy().decode()
        assert features["image"].numpy() == (raw / path).read_bytes()
    images, _, _ = next(iter(dataset))
    assert images.shape[1:] == (40, 40, 3)


def test_encode_without_splits_is_a_clear_error(project: Path):
    with pytest.raises(SystemExit) as exit_info:
        encode_stage.run(lambda: encode_stage.main(dvc_args("encode")))
    assert "data/splits/train.csv: missing" in str(exit_info.value.code)
    assert not (project / "data" / "tfrecords").exists()


def test_cached_images_equal_decoded_images(encoded: Path):
    def by_path(cache: bool) -> dict[str, np.ndarray]:
        dataset = records.make_dataset(encoded, "val", image_size=24, batch_size=16, with_paths=True, cache=cache)
        images, _, paths = next(iter(dataset))
        return dict(zip([p.decode() for p in paths.numpy()], images.numpy()))

    plain, cached = by_path(False), by_path(True)
    assert plain.keys() == cached.keys()
    assert all(np.array_equal(plain[k], cached[k]) for k in plain)
    assert all(np.array_equal(v, np.round(v)) for v in plain.values())  # 8-bit values after the resize


def first_record_only(shard: Path) -> None:
    """Cut a TFRecord file after its first record (8-byte length, 4-byte CRC, data, 4-byte CRC)."""
    data = shard.read_bytes()
    shard.write_bytes(data[: 16 + int.from_bytes(data[:8], "little")])


def flip_a_byte(shard: Path) -> None:
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [flip_a_byte, first_record_only])
def test_a_damaged_shard_is_refused_before_reading_naming_it_and_the_stage(encoded: Path, damage):
    shard = encoded / "train-00001-of-00003.tfrecord"
    damage(shard)
    with pytest.raises(PipelineError) as caught:
        records.make_dataset(encoded, "train", image_size=32, batch_size=4)
    assert str(caught.value) == (
        f"{shard}: its bytes are not those meta.json recorded (changed or cut since); "
        "re-run the encode stage (dvc repro encode)"
    )
    records.make_dataset(encoded, "val", image_size=32, batch_size=4)  # the other splits' shards are intact


def test_a_damaged_shard_stops_a_training_stage_with_one_line(encoded: Path, project: Path):
    from stages import baseline

    shard = sorted(records.read_meta(encoded)["splits"]["val"]["shards"])[-1]
    flip_a_byte(encoded / shard)
    with pytest.raises(SystemExit) as exit_info:
        baseline.run(lambda: baseline.main(dvc_args("baseline")))
    assert exit_info.value.code == (
        f"error: data/tfrecords/{shard}: its bytes are not those meta.json recorded "
        "(changed or cut since); re-run the encode stage (dvc repro encode)"
    )
    assert not (project / "models" / "baseline.keras").exists()


def test_meta_without_shard_hashes_asks_for_a_new_encode(encoded: Path):
    meta = json.loads((encoded / records.META_FILE).read_text())
    meta["splits"]["test"]["shards"] = list(meta["splits"]["test"]["shards"])
    (encoded / records.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(PipelineError, match="older version .no shard hashes.; re-run the encode stage"):
        records.make_dataset(encoded, "test", image_size=32, batch_size=4)


def test_a_full_disk_while_encoding_is_one_line_and_keeps_the_old_records(encoded: Path, monkeypatch):
    before = digests(encoded)
    real_writer = records.tf.io.TFRecordWriter
    # /dev/full answers every write with ENOSPC: TensorFlow's own error for a full disk, without filling one.
    monkeypatch.setattr(records.tf.io, "TFRecordWriter", lambda path, *args: real_writer("/dev/full", *args))
    with pytest.raises(SystemExit) as exit_info:
        encode_stage.run(lambda: encode_stage.main(dvc_args("encode")))
    assert str(exit_info.value.code).startswith("error: data/tfrecords: no space left on the device to write it (")
    assert digests(encoded) == before
    assert sorted(p.name for p in encoded.parent.iterdir()) == ["raw", "splits", "tfrecords"]


def test_an_image_that_changed_since_the_split_is_one_line_asking_for_the_split(encoded: Path, project: Path):
    changed = sorted((project / "data" / "raw" / "validation" / "dogs").iterdir())[0]
    changed.write_text("not an image any more\n")
    with pytest.raises(SystemExit) as exit_info:
        encode_stage.run(lambda: encode_stage.main(dvc_args("encode")))
    assert exit_info.value.code == (
        f"error: {changed.relative_to(project)}: no longer a usable image (not an image (no format Pillow can "
        "read)); re-run the split stage (dvc repro split)"
    )
