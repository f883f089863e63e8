from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from stages import split as split_stage
from stages.lib.file_lists import SKIP_REASONS, SplitError, make_splits, read_skipped, read_split, split_validation
from stages.lib.files import sha256_file
from tests.conftest import dvc_args, jpeg_bytes, make_raw_tree


def test_validation_is_split_into_val_and_test_about_the_fraction(raw_tree: Path):
    splits = make_splits(raw_tree, test_fraction=0.2, holdout_fraction=0.33, seed=1)
    assert splits.class_names == ["cats", "dogs"]
    assert splits.frames["train"]["label"].value_counts().to_dict() == {"cats": 6, "dogs": 6}
    val, test = splits.frames["val"], splits.frames["test"]
    assert len(val) + len(test) == 20 and 1 <= len(test) <= 8  # 10 validation images a class, 0.2 held out
    for frame in (val, test):
        assert set(frame["label"]) == {"cats", "dogs"}  # every class on both sides
    assert (test["label_index"] == test["label"].map({"cats": 0, "dogs": 1})).all()
    assert set(val["path"]).isdisjoint(test["path"])
    assert all(p.startswith("validation/") for p in test["path"])


def test_an_image_s_side_depends_on_its_bytes_alone():
    """Relabelling images or adding others moves no image between the sides (the permutation per class it replaced
    moved many): `dvc metrics diff` after a correction compares the same test images."""
    digests = [f"{i:064x}" for i in range(400)]
    frame = pd.DataFrame({"path": [f"v/{i}.jpg" for i in range(400)], "sha256": digests,
                          "given": ["a", "b", "c", "d"] * 100})  # fmt: skip
    _, held = split_validation(frame, 0.2, seed=3)
    assert 50 < len(held) < 110  # about 80
    relabelled = frame.assign(given=["a", "b", "c", "d"][::-1] * 100, label="x")
    more = pd.DataFrame({"path": [f"v/new{i}.jpg" for i in range(50)], "sha256": [f"{i:063x}f" for i in range(50)],
                         "given": "a"})  # fmt: skip
    _, held_again = split_validation(pd.concat([relabelled, more], ignore_index=True), 0.2, seed=3)
    assert set(held["path"]) == set(held_again["path"]) - set(more["path"])
    _, other_seed = split_validation(frame, 0.2, seed=4)
    assert set(other_seed["path"]) != set(held["path"])


def test_split_is_deterministic_and_depends_on_the_seed(raw_tree: Path):
    first = make_splits(raw_tree, test_fraction=0.3, holdout_fraction=0.33, seed=7).frames["test"]["path"].tolist()
    again = make_splits(raw_tree, test_fraction=0.3, holdout_fraction=0.33, seed=7).frames["test"]["path"].tolist()
    assert first == again
    others = {
        tuple(make_splits(raw_tree, test_fraction=0.3, holdout_fraction=0.33, seed=s).frames["test"]["path"])
        for s in range(8, 14)
    }
    assert any(list(o) != first for o in others)


def test_a_class_the_places_put_on_one_side_lends_one_image_to_the_other():
    frame = pd.DataFrame({"path": list("abcde"), "sha256": [f"{i:064x}" for i in range(5)],
                          "given": ["x", "x", "x", "y", "z"]})  # fmt: skip
    val, test = split_validation(frame, 0.999, seed=0)  # every place is below the line: all would be held out
    assert sorted(val["given"]) == ["x"] and sorted(test["given"]) == ["x", "x", "y", "z"]  # y, z: one image each
    val, test = split_validation(frame, 0.001, seed=0)  # none would be
    assert sorted(test["given"]) == ["x"] and len(val) == 4
    val, test = split_validation(frame, 0.0, seed=0)  # nothing asked for, nothing lent
    assert test.empty and len(val) == 5


def test_a_single_folder_of_many_small_classes_gives_every_class_to_train_val_and_test(tmp_path: Path):
    """100 classes of 10 images in one folder (a hostile pass's dataset): a third held out at random would leave
    some class one validation image, too few for val and test; each class holds out at least two."""
    raw = tmp_path / "raw"
    names = tuple(f"class {i:03d}" for i in range(100))
    tree = make_raw_tree(tmp_path / "tree", train_per_class=10, validation_per_class=0, classes=names)
    raw.mkdir()
    (tree / "train").rename(raw / "images")
    splits = splits_of(raw)
    for split, frame in splits.frames.items():
        assert set(frame["label"]) == set(names), split
    assert sum(len(frame) for frame in splits.frames.values()) == 1000
    frame = pd.DataFrame({"path": list("abcde"), "sha256": [f"{i:064x}" for i in range(5)], "given": "x"})
    kept, held = split_validation(frame, 0.001, seed=0, at_least=2)
    assert len(held) == 2 and len(kept) == 3
    kept, held = split_validation(frame.iloc[:2], 0.001, seed=0, at_least=2)
    assert len(held) == 1 and len(kept) == 1  # at most n - 1 held out


def test_unusable_files_are_skipped_with_reasons(raw_tree: Path):
    cats = raw_tree / "train" / "cats"
    (cats / "empty.jpg").write_bytes(b"")
    (cats / "notes.jpg").write_bytes(b"not an image")
    (cats / "cut.jpg").write_bytes(jpeg_bytes(99, size=(200, 200))[:500])
    (raw_tree / "validation" / "stray.jpg").write_bytes(jpeg_bytes(98))
    (cats / "gray.jpg").write_bytes(jpeg_bytes(97, mode="L"))
    (cats / "alpha.png").write_bytes(jpeg_bytes(96, mode="RGBA", fmt="PNG"))
    splits = make_splits(raw_tree, test_fraction=0.2, holdout_fraction=0.33, seed=1)
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
    assert metrics["train.class.cats"] == 8


def test_cross_split_duplicates_are_removed_from_the_later_split(raw_tree: Path):
    train_file = sorted((raw_tree / "train" / "dogs").iterdir())[0]
    shutil.copy(train_file, raw_tree / "validation" / "dogs" / "leak.jpg")
    (raw_tree / "train" / "dogs" / "twin.jpg").write_bytes(train_file.read_bytes())
    splits = make_splits(raw_tree, test_fraction=0.2, holdout_fraction=0.33, seed=1)
    all_rows = pd.concat(splits.frames.values())
    assert "validation/dogs/leak.jpg" not in set(all_rows["path"])
    assert splits.duplicates_removed["val"] + splits.duplicates_removed["test"] == 1
    assert splits.duplicates_within["train"] == 1  # counted, kept
    assert len(splits.frames["train"]) == 13
    for earlier, later in (("train", "val"), ("train", "test"), ("val", "test")):
        assert set(splits.frames[earlier]["sha256"]).isdisjoint(splits.frames[later]["sha256"])


def splits_of(raw: Path, test_fraction: float = 0.2, holdout_fraction: float = 0.33):
    return make_splits(raw, test_fraction=test_fraction, holdout_fraction=holdout_fraction, seed=1)


def test_a_class_in_validation_but_not_in_train_is_named(raw_tree: Path):
    (raw_tree / "validation" / "birds").mkdir()
    (raw_tree / "validation" / "birds" / "b.jpg").write_bytes(jpeg_bytes(99))
    with pytest.raises(SplitError) as err:
        splits_of(raw_tree)
    assert str(err.value) == (
        f"{raw_tree / 'validation'}: class 'birds' has no folder in train/; every class needs train images "
        "(train/ has cats, dogs)"
    )


def test_a_class_without_usable_train_images_is_named(raw_tree: Path):
    for image in (raw_tree / "train" / "dogs").iterdir():
        image.write_bytes(b"")  # zero-byte: skipped
    with pytest.raises(SplitError, match=r"raw/train: no usable image of class 'dogs'$"):
        splits_of(raw_tree)


def test_a_class_missing_from_validation_is_named(raw_tree: Path):
    shutil.rmtree(raw_tree / "validation" / "dogs")
    with pytest.raises(SplitError, match=r"raw/validation: no usable image of class 'dogs'$"):
        splits_of(raw_tree)


def test_one_class_is_refused(tmp_path: Path):
    raw = make_raw_tree(tmp_path / "raw", classes=("cats",))
    with pytest.raises(SplitError, match=r"raw/train: a classifier needs at least two class folders, found \['cats'\]"):
        splits_of(raw)


def test_an_empty_test_split_is_refused_before_any_training(tmp_path: Path):
    """One validation image a class cannot be in val and test: refused here, not after minutes of training (two are
    enough: the class lends one to the side its places left empty)."""
    raw = make_raw_tree(tmp_path / "raw", validation_per_class=1)
    with pytest.raises(SplitError) as err:
        splits_of(raw)
    assert str(err.value) == (
        f"{raw / 'validation'}: no usable image of class 'cats' in the test split: it has one validation image, and "
        "val and test need one each"
    )
    two = splits_of(make_raw_tree(tmp_path / "two", validation_per_class=2))
    assert two.frames["test"]["label"].value_counts().to_dict() == {"cats": 1, "dogs": 1}


def test_missing_raw_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SplitError, match="expected train/ and validation/ .*run it first \\(dvc repro download\\)"):
        splits_of(tmp_path)


def test_n_classes_with_any_names_get_sorted_indices(tmp_path: Path):
    names = ("zebra crossing", "Äpfel", "cats", "42")
    raw = make_raw_tree(tmp_path / "raw", train_per_class=3, validation_per_class=5, classes=names)
    splits = splits_of(raw)
    assert splits.class_names == sorted(names)
    train = splits.frames["train"]
    assert {(row.label, row.label_index) for row in train.itertuples()} == {(n, i) for i, n in enumerate(sorted(names))}
    metrics = splits.metrics()
    assert metrics["classes"] == 4 and metrics["train.class.Äpfel"] == 3 and metrics["imbalance.train"] == 1.0


def test_a_dataset_s_own_test_folder_is_used_as_it_is(raw_tree: Path):
    shutil.copytree(raw_tree / "validation", raw_tree / "test")
    for image in (raw_tree / "test").rglob("*.jpg"):
        image.write_bytes(jpeg_bytes(hash(image.name) % 10_000 + 50_000))  # other bytes: no duplicates
    splits = splits_of(raw_tree)
    assert len(splits.frames["val"]) == 20 and len(splits.frames["test"]) == 20  # nothing moved between them


def test_a_single_folder_of_class_folders_is_held_out_stratified(tmp_path: Path):
    raw = make_raw_tree(tmp_path / "tree", train_per_class=30, validation_per_class=0, classes=("a", "b", "c"))
    (raw / "train").rename(tmp_path / "images")
    shutil.rmtree(raw)
    (tmp_path / "raw").mkdir()
    (tmp_path / "images").rename(tmp_path / "raw" / "images")
    splits = splits_of(tmp_path / "raw", test_fraction=0.5, holdout_fraction=0.2)
    sizes = {split: len(frame) for split, frame in splits.frames.items()}
    assert sum(sizes.values()) == 90 and 60 <= sizes["train"] <= 84  # about 0.8 of 90 kept as train
    for frame in splits.frames.values():
        assert set(frame["label"]) == set("abc")
    again = splits_of(tmp_path / "raw", test_fraction=0.5, holdout_fraction=0.2)
    assert again.frames["test"]["path"].tolist() == splits.frames["test"]["path"].tolist()


def test_imbalance_is_reported(tmp_path: Path):
    raw = make_raw_tree(tmp_path / "raw", train_per_class=4, validation_per_class=5)
    for image in sorted((raw / "train" / "dogs").iterdir())[:3]:
        image.unlink()
    assert splits_of(raw).metrics()["imbalance.train"] == 4.0


def test_split_stage_writes_csvs_and_flat_sorted_metrics(project: Path):
    make_raw_tree(project / "data" / "raw")
    view = split_stage.main(dvc_args("split"))
    assert view.read == set(split_stage.PARAMS)
    out = project / "data" / "splits"
    assert sorted(p.name for p in out.iterdir()) == [
        "corrections.csv",
        "skipped.csv",
        "test.csv",
        "train.csv",
        "val.csv",
    ]
    test = pd.read_csv(out / "test.csv", keep_default_na=False)
    assert list(test.columns) == [
        "path", "label", "label_index", "sha256", "width", "height", "format", "mode", "given", "correction"
    ]  # fmt: skip
    assert test["path"].tolist() == sorted(test["path"])
    assert (test["given"] == test["label"]).all() and (test["correction"] == "").all()  # no corrections
    text = (project / "metrics" / "split.json").read_text()
    metrics = json.loads(text)
    headline = json.loads((project / "metrics" / "data.json").read_text())
    sizes = {f"{split}.total": len(pd.read_csv(out / f"{split}.csv")) for split in ("train", "val", "test")}
    assert headline == sizes and sizes["train.total"] == 12 and sum(sizes.values()) == 32  # `dvc metrics show`
    assert list(metrics) == sorted(metrics)
    assert all(isinstance(v, int) for k, v in metrics.items() if not k.startswith(("imbalance.", "params_read.")))
    assert metrics["params_read.split.test_fraction"] == 0.2 and metrics["params_read.seed"] == 42
    assert all(metrics[key] == size for key, size in sizes.items())
    assert metrics["corrections.rows"] == 0 and metrics["corrections.relabelled"] == 0
    assert {f"skipped.{r}" for r in SKIP_REASONS} <= set(metrics)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    split_stage.main(dvc_args("split"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert (project / "metrics" / "split.json").read_text() == text


def test_split_stage_failure_leaves_previous_output(project: Path, capsys):
    out = project / "data" / "splits"
    out.mkdir(parents=True)
    (out / "train.csv").write_text("old\n")
    with pytest.raises(SystemExit) as exit_info:
        split_stage.run(lambda: split_stage.main(dvc_args("split")))  # no data/raw: a user error, not a traceback
    assert "data/raw: expected train/ and validation/" in str(exit_info.value.code)
    assert (out / "train.csv").read_text() == "old\n"
    assert not (project / "metrics" / "data.json").exists()


def test_classes_named_like_missing_values_or_aggregates_keep_their_own_counts(tmp_path: Path):
    """Seen on the landed main: classes None / NA / null / nan crashed encode (pandas read them as NaN), and a
    class `total` lost its counts to the split's total (`train.total: 165` for a class of 15 images)."""
    names = ("None", "NA", "null", "nan", "total")
    raw = make_raw_tree(tmp_path / "raw", train_per_class=2, validation_per_class=5, classes=names)
    for extra in range(3):  # one more train image for `total`, so its count differs from every other
        (raw / "train" / "total" / f"extra{extra}.jpg").write_bytes(jpeg_bytes(1000 + extra))
    splits = splits_of(raw)
    metrics = splits.metrics()
    assert metrics["train.class.total"] == 5 and metrics["train.total"] == 2 * 4 + 5
    assert [metrics[f"train.class.{name}"] for name in ("None", "NA", "null", "nan")] == [2, 2, 2, 2]
    (tmp_path / "splits").mkdir()
    splits.frames["train"].to_csv(tmp_path / "splits" / "train.csv", index=False, lineterminator="\n")
    read_back = read_split(tmp_path / "splits", "train")
    assert sorted(set(read_back["label"])) == sorted(names)  # strings, not NaN
    assert read_back["label_index"].tolist() == splits.frames["train"]["label_index"].tolist()


def test_the_same_image_under_two_labels_is_skipped_in_every_copy_naming_the_others(tmp_path: Path):
    """Seen in issue 33: the validation copy of an image also in train under another label was dropped, counted as a
    duplicate but named nowhere, and the train copy trained on a label that may be wrong."""
    names = ("None", "macro", "猫")
    raw = make_raw_tree(tmp_path / "raw", train_per_class=4, validation_per_class=10, classes=names)
    image = sorted((raw / "train" / "None").iterdir())[0]
    copies = {  # the same bytes in train under None, in validation under macro and 猫
        f"train/None/{image.name}": "None",
        "validation/macro/copy.jpg": "macro",
        "validation/猫/copy.jpg": "猫",
    }
    for path in list(copies)[1:]:
        (raw / path).write_bytes(image.read_bytes())
    splits = splits_of(raw)
    kept = pd.concat(splits.frames.values())
    assert not set(copies) & set(kept["path"])
    conflicts = splits.skipped[splits.skipped["reason"] == "label_conflict"]
    assert dict(zip(conflicts["path"], conflicts["label"])) == copies
    assert set(conflicts["sha256"]) == {sha256_file(image)}
    detail = dict(zip(conflicts["path"], conflicts["detail"]))
    assert detail["validation/macro/copy.jpg"] == (
        f"the same image as train/None/{image.name} (class 'None'), validation/猫/copy.jpg (class '猫'); which label "
        "is right is unknown: keep one copy, in its right class folder, and delete the others"
    )
    metrics = splits.metrics()
    assert metrics["skipped.label_conflict"] == 3 and metrics["skipped.total"] == 3
    assert sum(splits.duplicates_removed.values()) == 0  # not duplicates of one label: none of them was kept
    assert metrics["train.class.None"] == 3


def test_the_same_image_under_two_classes_of_one_split_is_skipped_in_both(raw_tree: Path):
    cat = sorted((raw_tree / "train" / "cats").iterdir())[0]
    (raw_tree / "train" / "dogs" / "also_a_dog.jpg").write_bytes(cat.read_bytes())
    (raw_tree / "train" / "cats" / "twin.jpg").write_bytes(cat.read_bytes())  # a third copy, of the same label
    splits = splits_of(raw_tree)
    conflicts = splits.skipped.set_index("path")
    assert conflicts["reason"].to_dict() == {
        f"train/cats/{cat.name}": "label_conflict",
        "train/cats/twin.jpg": "label_conflict",
        "train/dogs/also_a_dog.jpg": "label_conflict",
    }
    assert conflicts.loc["train/dogs/also_a_dog.jpg", "detail"].startswith(
        f"the same image as train/cats/{cat.name} (class 'cats'), train/cats/twin.jpg (class 'cats'); "
    )
    assert splits.duplicates_within["train"] == 0 and len(splits.frames["train"]) == 11


def test_skipped_csv_names_the_class_folder_of_every_copy_and_reads_back_as_text(project: Path, capsys):
    """The audit lists skipped.csv's label conflicts with the label each copy was given: a class `None` stays text."""
    raw = make_raw_tree(project / "data" / "raw", classes=("None", "NA"))
    first = sorted((raw / "train" / "None").iterdir())[0]
    (raw / "validation" / "NA" / "copy.jpg").write_bytes(first.read_bytes())
    (raw / "train" / "NA" / "empty.jpg").write_bytes(b"")
    (raw / "train" / "stray.jpg").write_bytes(b"")
    split_stage.main(dvc_args("split"))
    skipped = read_skipped(project / "data" / "splits")
    assert list(skipped.columns) == ["path", "reason", "detail", "sha256", "label"]
    assert skipped.set_index("path")["label"].to_dict() == {
        "train/NA/empty.jpg": "NA",
        f"train/None/{first.name}": "None",
        "train/stray.jpg": "",  # not in a class folder
        "validation/NA/copy.jpg": "NA",
    }
    assert json.loads((project / "metrics" / "split.json").read_text())["skipped.label_conflict"] == 2
    assert capsys.readouterr().out.splitlines()[-1] == (
        "split: train 11, val 14, test 6; skipped 4 (empty 1, no_class_folder 1, label_conflict 2: "
        "data/splits/skipped.csv); duplicates removed 0"
    )


def test_images_every_stage_distorts_are_named_and_counted(project: Path, capsys):
    """Seen in issue 33: 1x1 and 20000x20 images were stretched to the stored square without a word."""
    raw = make_raw_tree(project / "data" / "raw", classes=("None", "macro"))
    Image.new("RGB", (1, 1), "red").save(raw / "train" / "None" / "dot.png")
    Image.new("RGB", (20_000, 20), "blue").save(raw / "train" / "macro" / "strip.png")
    Image.new("RGB", (20, 20_000), "blue").save(raw / "validation" / "macro" / "pole.png")
    Image.new("RGB", (90, 10), "green").save(raw / "train" / "macro" / "wide_but_within.png")  # 9:1
    split_stage.main(dvc_args("split"))
    out, err = capsys.readouterr()
    assert "warning" not in out  # the stage's results on stdout, its warnings on stderr
    assert err.splitlines() == [
        "split: warning: 2 images far from square (the longer side over split.warn_aspect_ratio=10 times the "
        "shorter): train/macro/strip.png 20000x20, validation/macro/pole.png 20x20000; every stage squashes an "
        "image to a square",
        "split: warning: 1 image with a side under split.warn_min_side=8 pixels: train/None/dot.png 1x1; every stage "
        "enlarges an image to its square size",
    ]
    metrics = json.loads((project / "metrics" / "split.json").read_text())
    assert metrics["warned.aspect_ratio"] == 2 and metrics["warned.min_side"] == 1
    assert {"train/None/dot.png", "train/macro/strip.png"} <= set(
        read_split(project / "data" / "splits", "train")["path"]
    )


def test_shape_warnings_follow_their_thresholds_and_name_at_most_five(raw_tree: Path):
    from stages.lib.file_lists import shape_warnings, warning_lines

    for index in range(7):
        Image.new("RGB", (300 + index, 10)).save(raw_tree / "train" / "cats" / f"wide{index}.png")
    frames = splits_of(raw_tree).frames
    warned = shape_warnings(frames, warn_aspect_ratio=10.0, warn_min_side=8)
    assert warned["warning"].tolist() == ["aspect_ratio"] * 7
    (line,) = warning_lines(warned, warn_aspect_ratio=10.0, warn_min_side=8)
    assert line.startswith("7 images far from square") and ", train/cats/wide4.png 304x10 and 2 more" in line
    assert shape_warnings(frames, warn_aspect_ratio=31.0, warn_min_side=8).empty  # 306:10 is under 31
    assert shape_warnings(frames, warn_aspect_ratio=31.0, warn_min_side=11)["warning"].tolist() == ["min_side"] * 7
    assert warning_lines(shape_warnings(frames, warn_aspect_ratio=31.0, warn_min_side=8), 31.0, 8) == []


def test_a_label_conflict_of_many_copies_names_five_others_and_counts_the_rest(raw_tree: Path):
    cat = sorted((raw_tree / "train" / "cats").iterdir())[0]
    for index in range(7):
        (raw_tree / "train" / "dogs" / f"copy{index}.jpg").write_bytes(cat.read_bytes())
    splits = splits_of(raw_tree)
    details = splits.skipped.set_index("path")["detail"]
    assert len(details) == 8
    assert details["train/dogs/copy6.jpg"].startswith(
        f"the same image as train/cats/{cat.name} (class 'cats'), train/dogs/copy0.jpg (class 'dogs'), "
        "train/dogs/copy1.jpg (class 'dogs'), train/dogs/copy2.jpg (class 'dogs'), train/dogs/copy3.jpg (class "
        "'dogs') and 2 more; "
    )
    assert "train/dogs/copy0.jpg (class 'dogs') and" not in details["train/dogs/copy0.jpg"]
