"""The offline sample dataset: deterministic bytes, the reference layout, the documented dirt, and no trivial cue."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from stages.lib import sample as sample_data
from stages.lib.sample import (
    MAX_CLASSES,
    SAMPLE_TOP_FOLDER,
    draw_sample_image,
    image_rng,
    plan_sample_archive,
    sample_archive_bytes,
    write_sample_archive,
)
from stages.lib.sample.drawing import ANIMALS, draw_animal

TOP = SAMPLE_TOP_FOLDER
SMALL = {"train_per_class": 8, "validation_per_class": 4}
CLASS_NAMES = ("cats", "dogs")  # the default two classes
FOLDERS = [(split, name) for split in ("train", "validation") for name in CLASS_NAMES]
NAME_RE = re.compile(r"^(cat|dog)\.(\d+)\.(jpg|png)$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_members(archive: Path | bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive) if isinstance(archive, bytes) else archive) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}


def classify(data: bytes) -> str:
    """What a pipeline would find in a file: 'empty', 'unidentified', 'truncated' or '<FORMAT>/<mode>'."""
    if not data:
        return "empty"
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return "unidentified"
    try:
        image.load()
    except OSError:
        return "truncated"
    return f"{image.format}/{image.mode}"


def best_threshold_accuracy(values: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy of the best single threshold on `values` (either direction), measured on the same data."""
    order = np.argsort(values, kind="stable")
    v, y = values[order], labels[order]
    n, pos = len(y), y.sum()
    below_pos = np.concatenate([[0], np.cumsum(y)])  # positives at or below each cut
    below = np.arange(n + 1)
    valid = np.concatenate([[True], v[1:] != v[:-1], [True]])  # cut only between distinct values
    acc_above = (below - below_pos + (pos - below_pos)) / n  # predict 1 above the cut
    acc = np.maximum(acc_above, 1 - acc_above)[valid]
    return float(acc.max())


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "sample.zip"
    write_sample_archive(path, seed=123, **SMALL)
    return path


@pytest.fixture(scope="module")
def small_members(small_archive: Path) -> dict[str, bytes]:
    return read_members(small_archive)


@pytest.fixture(scope="module")
def stats_sample() -> tuple[list[Image.Image], list[bytes], np.ndarray]:
    """2 x 100 regular images drawn exactly as in the archive (image generator, size and JPEG quality)."""
    images, encoded, labels = [], [], []
    for index in range(100):
        for label in (0, 1):
            image, quality = draw_sample_image(image_rng(7, label, index), label)
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality)
            images.append(image)
            encoded.append(out.getvalue())
            labels.append(label)
    return images, encoded, np.array(labels)


# ------------------------------------------------------------------------------------------------ determinism


def test_same_arguments_give_identical_bytes(small_archive: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.zip"
    write_sample_archive(again, seed=123, **SMALL)
    assert sha256(again.read_bytes()) == sha256(small_archive.read_bytes())


def test_rendering_threads_do_not_change_the_bytes(small_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_data, "_worker_count", lambda: 1)
    assert sha256(sample_archive_bytes(seed=123, **SMALL)) == sha256(small_archive.read_bytes())


def test_another_seed_gives_other_bytes(small_archive: Path, small_members: dict[str, bytes]) -> None:
    other = sample_archive_bytes(seed=124, **SMALL)
    assert sha256(other) != sha256(small_archive.read_bytes())
    images_a = {sha256(d) for d in small_members.values() if classify(d) == "JPEG/RGB"}
    images_b = {sha256(d) for d in read_members(other).values() if classify(d) == "JPEG/RGB"}
    assert images_a and images_b and not images_a & images_b


def test_zip_metadata_is_fixed(small_archive: Path) -> None:
    with zipfile.ZipFile(small_archive) as zf:
        infos = zf.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.create_system == 3
        assert info.external_attr >> 16 == (0o40755 if info.is_dir() else 0o100644)


def test_draw_animal_is_a_pure_function_of_the_generator() -> None:
    for label in ("cats", "dogs"):
        a = draw_animal(np.random.default_rng(5), label, 210, 170)
        b = draw_animal(np.random.default_rng(5), label, 210, 170)
        assert a.mode == "RGB" and a.size == (210, 170)
        assert a.tobytes() == b.tobytes()
        assert draw_animal(np.random.default_rng(6), label, 210, 170).tobytes() != a.tobytes()


# ------------------------------------------------------------------------------------------------------ layout


def test_layout_names_and_counts(small_members: dict[str, bytes], small_archive: Path) -> None:
    with zipfile.ZipFile(small_archive) as zf:
        dirs = {info.filename for info in zf.infolist() if info.is_dir()}
    assert dirs == {f"{TOP}/", f"{TOP}/train/", f"{TOP}/validation/"} | {f"{TOP}/{s}/{c}/" for s, c in FOLDERS}
    assert set(small_members) == {m.arcname for m in plan_sample_archive(seed=123, **SMALL)}
    assert len(small_members) == 2 * (8 + 4) + 6

    top_level = [n for n in small_members if n.count("/") == 1]
    assert top_level == [f"{TOP}/vectorize.py"]
    per_folder = Counter("/".join(n.split("/")[1:3]) for n in small_members if n.count("/") == 3)
    assert per_folder == {"train/cats": 8 + 2, "train/dogs": 8 + 1, "validation/cats": 4 + 1, "validation/dogs": 4 + 1}

    for name in CLASS_NAMES:
        numbers = {}
        for split in ("train", "validation"):
            files = [n.split("/")[-1] for n in small_members if n.startswith(f"{TOP}/{split}/{name}/")]
            matches = [NAME_RE.match(f) for f in files if f != "Thumbs.db"]
            assert all(m and m.group(1) == name[:-1] for m in matches), files
            numbers[split] = sorted(int(m.group(2)) for m in matches)
        # train numbered 0..T-1, validation continues at T, no gaps
        train_count = len(numbers["train"])
        assert numbers["train"] == list(range(train_count))
        assert numbers["validation"] == list(range(train_count, train_count + len(numbers["validation"])))


def test_every_folder_has_exactly_per_class_distinct_usable_images(small_members: dict[str, bytes]) -> None:
    """Decodable files, without the validation copy of a train file (the leak the pipeline has to drop)."""
    train_hashes = {sha256(d) for n, d in small_members.items() if n.startswith(f"{TOP}/train/")}
    for (split, name), expected in zip(FOLDERS, (8, 8, 4, 4)):
        folder = f"{TOP}/{split}/{name}/"
        usable = [
            sha256(data)
            for n, data in small_members.items()
            if n.startswith(folder) and classify(data).split("/")[0] in ("JPEG", "PNG")
        ]
        if split == "validation":
            usable = [h for h in usable if h not in train_hashes]
        assert len(usable) == len(set(usable)) == expected, folder


def test_regular_images_are_rgb_jpegs_of_varied_size(small_members: dict[str, bytes]) -> None:
    kinds = Counter(classify(data) for data in small_members.values())
    assert kinds["JPEG/RGB"] == 2 * (8 + 4) - 4 + 1  # minus the 4 usable dirty files, plus the duplicate
    sizes = [Image.open(io.BytesIO(d)).size for d in small_members.values() if classify(d).startswith(("JPEG", "PNG"))]
    assert all(150 <= side <= 500 for size in sizes for side in size)
    assert len(set(sizes)) > len(sizes) // 2


def test_dirty_files_are_present_once_and_of_the_intended_kind(small_members: dict[str, bytes]) -> None:
    found = {n: classify(d) for n, d in small_members.items()}

    def only(kind: str) -> str:
        names = [n for n, k in found.items() if k == kind]
        assert len(names) == 1, (kind, names)
        return names[0]

    assert only("JPEG/L").startswith(f"{TOP}/train/dogs/dog.")
    assert only("JPEG/CMYK").startswith(f"{TOP}/validation/cats/cat.")
    rgba = only("PNG/RGBA")
    assert rgba.startswith(f"{TOP}/validation/dogs/dog.") and rgba.endswith(".png")
    png_as_jpg = only("PNG/RGB")
    assert png_as_jpg.startswith(f"{TOP}/train/cats/cat.") and png_as_jpg.endswith(".jpg")
    assert only("truncated").startswith(f"{TOP}/train/cats/cat.")
    zero = only("empty")
    assert zero.startswith(f"{TOP}/validation/dogs/dog.") and zero.endswith(".jpg")
    assert small_members[zero] == b""
    text = [n for n, k in found.items() if k == "unidentified" and n.endswith(".jpg") and small_members[n]]
    assert len(text) == 1 and text[0].startswith(f"{TOP}/train/dogs/dog.")
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(small_members[text[0]]))
    assert [n for n in small_members if n.endswith("Thumbs.db")] == [f"{TOP}/train/cats/Thumbs.db"]
    assert small_members[f"{TOP}/vectorize.py"].startswith(b'"""')

    # The truncated file has a valid JPEG header and fails only when decoded.
    truncated = Image.open(io.BytesIO(small_members[only("truncated")]))
    assert truncated.format == "JPEG"
    with pytest.raises(OSError):
        truncated.load()
    # The usable dirty files convert to RGB like any other image.
    for name in (only("JPEG/L"), only("JPEG/CMYK"), rgba, png_as_jpg):
        assert Image.open(io.BytesIO(small_members[name])).convert("RGB").mode == "RGB"


def test_exactly_one_train_image_leaks_into_validation(small_members: dict[str, bytes]) -> None:
    by_hash: dict[str, list[str]] = {}
    for name, data in small_members.items():
        if data:
            by_hash.setdefault(sha256(data), []).append(name)
    copies = [sorted(names) for names in by_hash.values() if len(names) > 1]
    assert len(copies) == 1
    source, copy = copies[0]
    assert source.startswith(f"{TOP}/train/cats/") and copy.startswith(f"{TOP}/validation/cats/")
    assert classify(small_members[copy]) == "JPEG/RGB"
    (duplicate,) = [m for m in plan_sample_archive(seed=123, **SMALL) if m.kind == "duplicate"]
    assert (duplicate.source, duplicate.arcname) == (source, copy)


def test_plan_matches_the_archive(small_members: dict[str, bytes]) -> None:
    expected = {
        "image": "JPEG/RGB",
        "duplicate": "JPEG/RGB",
        "png_as_jpg": "PNG/RGB",
        "grayscale": "JPEG/L",
        "cmyk": "JPEG/CMYK",
        "rgba_png": "PNG/RGBA",
        "truncated": "truncated",
        "zero_byte": "empty",
        "text_as_jpg": "unidentified",
        "thumbs_db": "unidentified",
        "stray": "unidentified",
    }
    for member in plan_sample_archive(seed=123, **SMALL):
        assert classify(small_members[member.arcname]) == expected[member.kind], member


@pytest.mark.parametrize("sizes", [(2, 2), (3, 2)])
def test_smallest_sizes_still_carry_all_the_dirt(sizes: tuple[int, int]) -> None:
    train, validation = sizes
    members = read_members(sample_archive_bytes(seed=1, train_per_class=train, validation_per_class=validation))
    kinds = Counter(classify(d) for d in members.values())
    assert len(members) == 2 * (train + validation) + 6
    for kind in ("JPEG/L", "JPEG/CMYK", "PNG/RGBA", "PNG/RGB", "truncated", "empty"):
        assert kinds[kind] == 1, kind
    assert kinds["unidentified"] == 3  # text-as-jpg, Thumbs.db, vectorize.py


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 1.5},
        {"seed": 0, "train_per_class": 1},
        {"seed": 0, "validation_per_class": 0},
        {"seed": 0, "train_per_class": True},
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_sample_archive(tmp_path / "x.zip", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sample.zip"
    target.write_bytes(b"old")

    def broken(seed, member):
        raise RuntimeError("boom")

    monkeypatch.setattr(sample_data, "render_member", broken)
    with pytest.raises(RuntimeError):
        write_sample_archive(target, seed=0, train_per_class=2, validation_per_class=2)
    assert target.read_bytes() == b"old"
    monkeypatch.undo()
    write_sample_archive(target, seed=0, train_per_class=2, validation_per_class=2)
    assert zipfile.is_zipfile(target)
    assert [p.name for p in tmp_path.iterdir()] == ["sample.zip"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------------- no trivial cue


def test_mean_colour_size_and_file_size_do_not_separate_the_classes(stats_sample) -> None:
    images, encoded, labels = stats_sample
    pixels = [np.asarray(image, dtype=np.float32) for image in images]
    features = {
        "mean_r": [p[..., 0].mean() for p in pixels],
        "mean_g": [p[..., 1].mean() for p in pixels],
        "mean_b": [p[..., 2].mean() for p in pixels],
        "brightness": [p.mean() for p in pixels],
        "contrast": [p.std() for p in pixels],
        "width": [image.width for image in images],
        "height": [image.height for image in images],
        "area": [image.width * image.height for image in images],
        "jpeg_bytes": [len(data) for data in encoded],
        "bytes_per_pixel": [len(data) / (image.width * image.height) for data, image in zip(encoded, images)],
    }
    for name, values in features.items():
        accuracy = best_threshold_accuracy(np.asarray(values, dtype=np.float64), labels)
        assert accuracy <= 0.7, (name, accuracy)

    # Nor does a linear classifier on all of them together (2-fold cross-validation).
    x = np.column_stack(list(features.values())).astype(np.float64)
    x = np.column_stack([(x - x.mean(0)) / x.std(0), np.ones(len(x))])
    order = np.random.default_rng(0).permutation(len(labels))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    for fit, test in (halves, halves[::-1]):
        w = np.linalg.lstsq(x[fit], 2.0 * labels[fit] - 1, rcond=None)[0]
        assert ((x[test] @ w > 0) == labels[test]).mean() <= 0.7


def test_both_classes_share_the_size_distribution(stats_sample) -> None:
    images, _, labels = stats_sample
    for axis in (0, 1):
        sides = np.array([image.size[axis] for image in images])
        for label in (0, 1):
            own = sides[labels == label]
            assert own.min() < 200 and own.max() > 450  # both classes span the whole 150..500 range
        assert abs(np.median(sides[labels == 0]) - np.median(sides[labels == 1])) < 60


def test_two_classes_hold_the_bytes_they_had_before_more_classes_existed():
    """Digests of every member's path below the top folder and bytes, as the generator wrote them before it had
    classes beyond cats and dogs (commit 6eac343) and before its top folder was renamed animals_sample: no image
    byte changed, so data/raw, and the hashes of every stage after download, still hold."""
    before = {
        (0, 3, 2): "7ce876ad737cc5117fc314a82fa44079a1396695975418db736c7f83d7aee6c8",
        (42, 5, 4): "af79c1d02a5b595f907a73c0e0beb153d03fd117f76f5def6c78436f2d428288",
    }
    for (seed, train, validation), digest in before.items():
        members = read_members(
            sample_archive_bytes(seed=seed, train_per_class=train, validation_per_class=validation, classes=2)
        )
        assert {name.split("/", 1)[0] for name in members} == {"animals_sample"}
        content = hashlib.sha256()
        for name in sorted(members):
            content.update(name.split("/", 1)[1].encode() + b"\0" + hashlib.sha256(members[name]).digest())
        assert content.hexdigest() == digest


def test_more_classes_add_clean_class_folders_after_cats_and_dogs():
    members = read_members(sample_archive_bytes(seed=3, train_per_class=3, validation_per_class=2, classes=4))
    folders = Counter(tuple(name.split("/")[1:3]) for name in members if name.count("/") == 3)
    assert sorted({name for _, name in folders}) == ["bears", "cats", "dogs", "rabbits"]
    for split, count in (("train", 3), ("validation", 2)):
        for name in ("rabbits", "bears"):  # no dirt in the added classes: exactly the requested images
            assert folders[(split, name)] == count
            folder = f"{TOP}/{split}/{name}/"
            assert all(
                Image.open(io.BytesIO(data)).format == "JPEG" for n, data in members.items() if n.startswith(folder)
            )
    # The cats and dogs of a 4-class archive are those of the 2-class archive, byte for byte.
    two = read_members(sample_archive_bytes(seed=3, train_per_class=3, validation_per_class=2, classes=2))
    assert {k: v for k, v in members.items() if "/cats/" in k or "/dogs/" in k} == {
        k: v for k, v in two.items() if "/cats/" in k or "/dogs/" in k
    }


def test_every_class_draws_differently_shaped_animals():
    """Each class's drawing differs from every other's on the same generator: the class decides the shape."""
    drawn = [
        np.asarray(draw_animal(np.random.default_rng(11), i, 120, 120), dtype=np.int16) for i in range(MAX_CLASSES)
    ]
    for i in range(MAX_CLASSES):
        for j in range(i + 1, MAX_CLASSES):
            assert np.abs(drawn[i] - drawn[j]).mean() > 1.0, (ANIMALS[i].name, ANIMALS[j].name)


@pytest.mark.parametrize("classes", [1, MAX_CLASSES + 1, True, 2.0])
def test_class_count_out_of_range_is_refused(classes):
    with pytest.raises(ValueError, match="classes must be an int from 2 to"):
        plan_sample_archive(seed=0, classes=classes)
