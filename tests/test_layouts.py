"""The folder layouts a dataset may come in, found in the extracted tree or its single top folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.lib.layouts import LayoutError, find_layout


def make_tree(root: Path, *files: str) -> Path:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def folders(tree: Path) -> dict[str, str]:
    return {role: path.relative_to(tree).as_posix() for role, path in find_layout(tree).folders.items()}


def test_train_and_validation_in_the_single_top_folder(tmp_path: Path):
    make_tree(tmp_path, "cats_and_dogs_filtered/train/cats/1.jpg", "cats_and_dogs_filtered/validation/cats/2.jpg")
    make_tree(tmp_path, "cats_and_dogs_filtered/train/dogs/3.jpg", "cats_and_dogs_filtered/validation/dogs/4.jpg")
    (tmp_path / "README.txt").write_text("a loose file next to the folder does not count")
    assert folders(tmp_path) == {
        "train": "cats_and_dogs_filtered/train",
        "validation": "cats_and_dogs_filtered/validation",
    }


@pytest.mark.parametrize("held_out", ["val", "Valid", "VALIDATION"])
def test_validation_goes_by_other_names(tmp_path: Path, held_out: str):
    make_tree(tmp_path, "Train/a/1.jpg", "Train/b/3.jpg", f"{held_out}/a/2.jpg")
    assert folders(tmp_path) == {"train": "Train", "validation": held_out}


def test_train_and_test_make_test_the_held_out_folder(tmp_path: Path):
    """The hot-dog archive: hotdog/train and hotdog/test; the split stage divides test/ into val and test."""
    make_tree(tmp_path, "hotdog/train/hotdog/1.png", "hotdog/train/not-hotdog/3.png", "hotdog/test/hotdog/2.png")
    assert folders(tmp_path) == {"train": "hotdog/train", "validation": "hotdog/test"}


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("training", "testing"), {"train": "ds/training", "validation": "ds/testing"}),
        (("Training", "valid", "Testing"), {"train": "ds/Training", "validation": "ds/valid", "test": "ds/Testing"}),
    ],
    ids=["training_testing", "training_valid_testing"],
)
def test_training_testing_and_valid_are_split_names(tmp_path: Path, names: tuple[str, ...], expected: dict):
    """Issue 30: `training/` + `testing/`, the names of many public sets, were refused (renaming was needed)."""
    for name in names:
        make_tree(tmp_path, f"ds/{name}/a/1.jpg", f"ds/{name}/b/2.jpg")
    assert folders(tmp_path) == expected


@pytest.mark.parametrize(("one", "other", "role"), [("train", "training", "train"), ("test", "testing", "test")])
def test_two_names_of_one_split_are_refused_with_the_new_names_too(tmp_path: Path, one: str, other: str, role: str):
    make_tree(tmp_path, "train/a/1.jpg", "validation/a/2.jpg", f"{one}/a/3.jpg", f"{other}/a/4.jpg")
    with pytest.raises(LayoutError, match=f"both {one}/ and {other}/ would be the {role} folder; keep one of them"):
        find_layout(tmp_path)


def test_train_validation_and_test_are_kept_apart(tmp_path: Path):
    make_tree(tmp_path, "train/a/1.jpg", "train/b/4.jpg", "val/a/2.jpg", "test/a/3.jpg")
    assert folders(tmp_path) == {"train": "train", "validation": "val", "test": "test"}


def test_a_single_folder_of_class_folders(tmp_path: Path):
    make_tree(tmp_path, "flowers/daisy/1.jpg", "flowers/rose/2.jpg", "flowers/tulip/3.jpg")
    assert folders(tmp_path) == {"images": "flowers"}
    flat = make_tree(tmp_path / "flat", "daisy/1.jpg", "rose/2.jpg")
    assert folders(flat) == {"images": "."}


def test_two_folders_for_one_role_are_refused(tmp_path: Path):
    make_tree(tmp_path, "train/a/1.jpg", "val/a/2.jpg", "validation/a/3.jpg")
    with pytest.raises(LayoutError, match="both val/ and validation/ would be the validation folder"):
        find_layout(tmp_path)


def test_nothing_recognisable_lists_what_was_found(tmp_path: Path):
    make_tree(tmp_path, "data/train/a/1.jpg", "data/extra/a/2.jpg", "notes.txt")
    with pytest.raises(LayoutError) as err:
        find_layout(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "found: data/, notes.txt" in message


def test_several_top_folders_are_not_guessed_among(tmp_path: Path):
    make_tree(tmp_path, "a/train/x/1.jpg", "a/validation/x/2.jpg", "b/train/x/3.jpg", "b/validation/x/4.jpg")
    with pytest.raises(LayoutError, match="found: a/, b/"):
        find_layout(tmp_path)


@pytest.mark.parametrize("split_name", ["train", "test", "Validation"])
def test_a_class_named_like_a_split_beside_other_classes(tmp_path: Path, split_name: str):
    """Seen on the landed main: vehicles/{airplane,bus,train} was refused as no dataset folder."""
    make_tree(tmp_path, "vehicles/airplane/1.jpg", "vehicles/bus/2.jpg", f"vehicles/{split_name}/3.jpg")
    assert folders(tmp_path) == {"images": "vehicles"}


def test_classes_train_and_test_inside_split_folders(tmp_path: Path):
    make_tree(tmp_path, "d/train/train/1.jpg", "d/train/bus/2.jpg", "d/val/train/3.jpg", "d/val/bus/4.jpg")
    assert folders(tmp_path) == {"train": "d/train", "validation": "d/val"}


def test_two_folders_for_one_role_name_the_source_and_the_folder_not_a_temporary_path(tmp_path: Path):
    """Seen on the landed main: the error named data/.raw.kotsnyt4.tmp/.extracted/ds, a folder gone after the stage."""
    make_tree(tmp_path, "ds/train/a/1.jpg", "ds/val/a/2.jpg", "ds/validation/a/3.jpg")
    with pytest.raises(LayoutError) as err:
        find_layout(tmp_path, "data/mine.zip")
    assert str(err.value) == (
        "data/mine.zip, in ds/: both val/ and validation/ would be the validation folder; keep one of them"
    )


# --- the edges of a dataset: empty class folders, one class --------------------------------------------------


@pytest.mark.parametrize("name", ["c", "None", "macro", "café 猫"])
def test_an_empty_class_folder_in_one_folder_of_class_folders_is_named(tmp_path: Path, name: str):
    """Seen in issue 33: ds/a, ds/b and an empty ds/c gave `no dataset folder ... ds/ holds: a/, b/, c/`."""
    make_tree(tmp_path, "ds/a/1.jpg", "ds/b/2.jpg")
    (tmp_path / "ds" / name).mkdir()
    with pytest.raises(LayoutError) as err:
        find_layout(tmp_path, "mine.zip")
    assert str(err.value) == (
        f"mine.zip: the class folder ds/{name}/ is empty; put its images in it, or delete the folder"
    )


@pytest.mark.parametrize("held_out", ["train", "validation", "test"])
def test_an_empty_class_folder_in_any_split_folder_is_named(tmp_path: Path, held_out: str):
    make_tree(tmp_path, "ds/train/a/1.jpg", "ds/train/b/2.jpg", "ds/validation/a/3.jpg", "ds/validation/b/4.jpg")
    make_tree(tmp_path, "ds/test/a/5.jpg", "ds/test/b/6.jpg")
    (tmp_path / "ds" / held_out / "c" / "sub").mkdir(parents=True)  # a folder of nothing but empty folders
    with pytest.raises(LayoutError, match=rf"^mine.zip: the class folder ds/{held_out}/c/ is empty; put its images"):
        find_layout(tmp_path, "mine.zip")


def test_a_class_folder_of_only_left_out_files_is_named_with_them(tmp_path: Path):
    """Seen in issue 33: a folder holding only .DS_Store vanished as a class, with only `ignored 1` as trace.
    Extraction leaves such files out but keeps their folder; `left_out` names what it held."""
    make_tree(tmp_path, "ds/a/1.jpg", "ds/b/2.jpg")
    (tmp_path / "ds" / "c").mkdir()
    left_out = ["ds/c/.DS_Store", "ds/c/Thumbs.db", "ds/a/.hidden.jpg", "__MACOSX/ds/c/._x.jpg"]
    with pytest.raises(LayoutError) as err:
        find_layout(tmp_path, "mine.zip", left_out=left_out)
    assert str(err.value) == (
        "mine.zip: the class folder ds/c/ holds no image, only .DS_Store, Thumbs.db (hidden and system files are "
        "left out of every dataset); put its images in it, or delete the folder"
    )


@pytest.mark.parametrize(
    ("files", "named"),
    [
        (("ds/a/1.jpg", "ds/a/2.jpg"), "ds/a/"),  # one folder holding one class folder
        (("ds/a/1.jpg", "ds/readme.txt"), "ds/a/"),  # a loose file beside it changes nothing
        (("photos/1.jpg", "photos/2.jpg"), "photos/"),  # a folder of images, no class folders
        (("a/1.jpg",), "a/"),
    ],
)
def test_one_class_is_refused_with_the_fewer_than_two_classes_line(tmp_path: Path, files: tuple, named: str):
    """docs/datasets.md promised it; a one-folder dataset of one class got the generic layout line."""
    make_tree(tmp_path, *files)
    with pytest.raises(LayoutError) as err:
        find_layout(tmp_path, "mine.zip")
    assert str(err.value) == (
        f"mine.zip: a classifier needs at least two classes, found one class folder: {named}; "
        "put each class's images in a folder of its own beside it"
    )


def test_one_class_in_split_folders_is_refused_with_the_fewer_than_two_classes_line(tmp_path: Path):
    make_tree(tmp_path, "ds/train/None/1.jpg", "ds/val/None/2.jpg")
    with pytest.raises(LayoutError) as err:
        find_layout(tmp_path, "mine.zip")
    assert str(err.value) == (
        "mine.zip: a classifier needs at least two classes, found one class folder: ds/train/None/; "
        "put each class's images in a folder of its own beside it"
    )


def test_what_was_found_marks_empty_folders(tmp_path: Path):
    make_tree(tmp_path, "x/1.jpg", "y/2.jpg", "z/sub/3.jpg")
    (tmp_path / "w").mkdir()
    with pytest.raises(LayoutError, match=r"found: w/ \(empty\), x/, y/, z/$"):
        find_layout(tmp_path, "mine.zip")
