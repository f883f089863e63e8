from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from stages import split as split_stage
from stages.lib.file_lists import SKIP_REASONS, SplitError, make_splits, split_validation
from tests.conftest import dvc_args, jpeg_bytes, make_raw_tree


def test_validation_is_split_stratified_by_class(raw_tree: Path):
    splits = make_splits(raw_tree, test_fraction=0.2, seed=1)
    assert splits.class_names == ["cats", "dogs"]
    for split, per_class in (("train", 6), ("val", 8), ("test", 2)):
        counts = splits.frames[split]["label"].value_counts().to_dict()
        assert counts == {"cats": per_class, "dogs": per_class}, split
    test = splits.frames["test"]
    assert (test["label_index"] == test["label"].map({"cats": 0, "dogs": 1})).all()
    assert set(splits.frames["val"]["path"]).isdisjoint(test["path"])
    assert all(p.startswith("validation/") for p in test["path"])


def test_split_is_deterministic_and_depends_on_the_seed(raw_tree: Path):
    first = make_splits(raw_tree, test_fraction=0.3, seed=7).frames["test"]["path"].tolist()
    again = make_splits(raw_tree, test_fraction=0.3, seed=7).frames["test"]["path"].tolist()
    assert first == again
    others = {tuple(make_splits(raw_tree, test_fraction=0.3, seed=s).frames["test"]["path"]) for s in range(8, 14)}
    assert any(list(o) != first for o in others)


def test_split_validation_keeps_at_least_one_val_image_per_class():
    frame = pd.DataFrame({"path": ["a", "b", "c"], "label_index": [0, 0, 1]})
    val, test = split_validation(frame, 0.9, seed=0)
    assert sorted(val["label_index"]) == [0, 1]
    assert test["label_index"].tolist() == [0]


def test_unusable_files_are_skipped_with_reasons(raw_tree: Path):
    cats = raw_tree / "train" / "cats"
    (cats / "empty.jpg").write_bytes(b"")
    (cats / "notes.jpg").write_bytes(b"not an image")
    (cats / "cut.jpg").write_bytes(jpeg_bytes(99, size=(200, 200))[:500])
    (raw_tree / "validation" / "stray.jpg").write_bytes(jpeg_bytes(98))
    (cats / "gray.jpg").write_bytes(jpeg_bytes(97, mode="L"))
    (cats / "alpha.png").write_bytes(jpeg_bytes(96, mode="RGBA", fmt="PNG"))
    splits = make_splits(raw_tree, test_fraction=0.2, seed=1)
    reasons = dict(zip(splits.skipped["path"], splits.skipped["reason"]))
    assert reasons == {
        "train/cats/empty.jpg": "empty",
        "train/cats/notes.jpg": "not_an_image",
        "train/cats/cut.jpg": "truncated",
        "validation/stray.jpg": "no_class_folder",
    }
    kept = set(splits.frames["train"]["path"])
    assert {"train/cats/gray.jpg", "train/cats/alpha.png"} <= kept
    metrics = splits.metrics()
    assert metrics["skipped.total"] == 4 and metrics["skipped.decode_error"] == 0
    assert metrics["train.cats"] == 8


def test_cross_split_duplicates_are_removed_from_the_later_split(raw_tree: Path):
    train_file = sorted((raw_tree / "train" / "dogs").iterdir())[0]
    shutil.copy(train_file, raw_tree / "validation" / "dogs" / "leak.jpg")
    (raw_tree / "train" / "dogs" / "twin.jpg").write_bytes(train_file.read_bytes())
    splits = make_splits(raw_tree, test_fraction=0.2, seed=1)
    all_rows = pd.concat(splits.frames.values())
    assert "validation/dogs/leak.jpg" not in set(all_rows["path"])
    assert splits.duplicates_removed["val"] + splits.duplicates_removed["test"] == 1
    assert splits.duplicates_within["train"] == 1  # counted, kept
    assert len(splits.frames["train"]) == 13
    for earlier, later in (("train", "val"), ("train", "test"), ("val", "test")):
        assert set(splits.frames[earlier]["sha256"]).isdisjoint(splits.frames[later]["sha256"])


def test_class_folders_must_match(raw_tree: Path):
    (raw_tree / "validation" / "birds").mkdir()
    with pytest.raises(SplitError, match="class folders differ"):
        make_splits(raw_tree, test_fraction=0.2, seed=1)


def test_missing_raw_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SplitError, match="train: missing"):
        make_splits(tmp_path, test_fraction=0.2, seed=1)


def test_split_stage_writes_csvs_and_flat_sorted_metrics(project: Path):
    make_raw_tree(project / "data" / "raw")
    view = split_stage.main(dvc_args("split"))
    assert view.read == set(split_stage.PARAMS)
    out = project / "data" / "splits"
    assert sorted(p.name for p in out.iterdir()) == ["skipped.csv", "test.csv", "train.csv", "val.csv"]
    test = pd.read_csv(out / "test.csv")
    assert list(test.columns) == ["path", "label", "label_index", "sha256", "width", "height", "format", "mode"]
    assert test["path"].tolist() == sorted(test["path"])
    text = (project / "metrics" / "data.json").read_text()
    metrics = json.loads(text)
    assert list(metrics) == sorted(metrics)
    assert all(isinstance(v, int) for v in metrics.values())
    assert metrics["test.total"] == 4 and metrics["val.total"] == 16 and metrics["train.total"] == 12
    assert {f"skipped.{r}" for r in SKIP_REASONS} <= set(metrics)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    split_stage.main(dvc_args("split"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert (project / "metrics" / "data.json").read_text() == text


def test_split_stage_failure_leaves_previous_output(project: Path, capsys):
    out = project / "data" / "splits"
    out.mkdir(parents=True)
    (out / "train.csv").write_text("old\n")
    with pytest.raises(SystemExit) as exit_info:
        split_stage.run(lambda: split_stage.main(dvc_args("split")))  # no data/raw: a user error, not a traceback
    assert "data/raw/train: missing" in str(exit_info.value.code)
    assert (out / "train.csv").read_text() == "old\n"
    assert not (project / "metrics" / "data.json").exists()
