from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest

from stages import download as download_stage
from stages.lib import params, reference, sources
from tests.conftest import dvc_args, jpeg_bytes, make_raw_tree, set_params


def zip_tree(tree: Path, archive: Path, top: str = "my_dataset") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(tree).as_posix()}")
        zf.writestr(f"{top}/__MACOSX/._cat.jpg", b"resource fork")
        zf.writestr(f"{top}/vectorize.py", b"print('hi')\n")
    return archive


def run_stage(capsys=None) -> str:
    """Run the stage as `python -m stages.download` would; return the error line, or '' on success."""
    try:
        download_stage.run(lambda: download_stage.main(dvc_args("download")))
    except SystemExit as exc:
        return str(exc.code)
    return ""


def test_local_archive_is_extracted_with_manifest(project: Path, tmp_path: Path):
    archive = zip_tree(make_raw_tree(tmp_path / "tree", 3, 2), project / "my.zip")
    set_params(project, data={"source": "my.zip"})
    view = download_stage.main(dvc_args("download"))
    assert view.read == {k for k in params.all_keys(params.load()) if k.startswith("data.")} | {"seed"}
    raw = project / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["manifest.json", "train", "validation"]
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["files"] == {"train/cats": 3, "train/dogs": 3, "validation/cats": 2, "validation/dogs": 2}
    assert manifest["ignored"] == {"macosx": 1, "outside_layout": 1}  # vectorize.py beside the split folders
    assert manifest["bytes"] == archive.stat().st_size and len(manifest["sha256"]) == 64
    assert manifest["source"] == "my.zip"


def test_sample_source_is_deterministic(project: Path):
    set_params(project, data={"source": "sample", "sample_train_per_class": 4, "sample_validation_per_class": 3})
    download_stage.main(dvc_args("download"))
    raw = project / "data" / "raw"
    first = json.loads((raw / "manifest.json").read_text())
    files = {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    assert first["ignored"] == {"outside_layout": 1, "system_file": 1}  # vectorize.py, Thumbs.db
    download_stage.main(dvc_args("download"))
    assert {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()} == files


def test_refused_archive_keeps_previous_output(project: Path, tmp_path: Path):
    zip_tree(make_raw_tree(tmp_path / "tree", 2, 2), project / "good.zip")
    set_params(project, data={"source": "good.zip"})
    download_stage.main(dvc_args("download"))
    raw = project / "data" / "raw"
    before = {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()}
    with zipfile.ZipFile(project / "evil.zip", "w") as zf:
        zf.writestr("top/train/cats/a.jpg", b"x")
        zf.writestr("../escape.jpg", b"x")
    set_params(project, data={"source": "evil.zip"})
    error = run_stage()
    assert "escape.jpg" in error
    assert {p.relative_to(raw): p.read_bytes() for p in raw.rglob("*") if p.is_file()} == before
    assert not (project.parent / "escape.jpg").exists()
    assert [p.name for p in (project / "data").iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_archive_without_the_layout_is_refused_naming_the_archive_not_a_temporary_folder(project: Path):
    with zipfile.ZipFile(project / "two_tops.zip", "w") as zf:
        zf.writestr("a/train/cats/cat.jpg", b"x")
        zf.writestr("b/validation/cats/cat.jpg", b"x")
    set_params(project, data={"source": "two_tops.zip"})
    error = run_stage()
    assert error.startswith("error: no dataset folder in two_tops.zip: expected train/") and "found: a/, b/" in error
    assert ".tmp" not in error and ".extracted" not in error
    assert not (project / "data" / "raw").exists()


def test_missing_local_archive_names_the_key(project: Path):
    set_params(project, data={"source": "nowhere/data.zip"})
    error = run_stage()
    assert error.startswith("error: data.source: nowhere/data.zip is not a file")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"source": "imagenet"}, "data.source: must be a named dataset (cats_and_dogs_filtered, hotdog, mnist, "),
        ({"source": "cifar-10"}, "data.source: must be a named dataset (cats_and_dogs_filtered, hotdog, mnist, "),
        ({"source": "sample", "sample_classes": 11}, "data.sample_classes: the sample draws at most 10 animals"),
        ({"source": "mine.zip", "sample_classes": 11}, "data.sample_classes: the sample draws at most 10 animals"),
    ],
)
def test_keys_only_the_registries_know_are_checked_first(project: Path, data: dict, expected: str):
    set_params(project, data=data)
    assert run_stage().startswith(f"error: params.yaml: {expected}")
    assert not (project / "data").exists()


def test_sha256_pin_is_checked_before_extraction(project: Path, tmp_path: Path):
    zip_tree(make_raw_tree(tmp_path / "tree", 2, 2), project / "my.zip")
    set_params(project, data={"source": "my.zip", "sha256": "0" * 64})
    error = run_stage()
    assert "data.sha256 pins 000" in error and "my.zip" in error
    assert not (project / "data" / "raw").exists()


def test_unreachable_url_fails_fast_with_advice(project: Path):
    set_params(project, data={"source": "http://127.0.0.1:9/cats_and_dogs_filtered.zip"})  # port 9: nothing listens
    start = time.monotonic()
    error = run_stage()
    assert time.monotonic() - start < 15
    assert "http://127.0.0.1:9/cats_and_dogs_filtered.zip" in error
    assert "data.source" in error and "make demo" in error
    assert not (project / "data" / "raw").exists()
    assert list((project / "data" / "downloads").iterdir()) == []


def test_reference_name_means_the_reference_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    asked = []
    monkeypatch.setattr(download_stage, "download", lambda url, dest, sha256: asked.append((url, dest.name)))
    download_stage.fetch_archive("cats_and_dogs_filtered", tmp_path, None, 0, (2, 2, 2))
    assert [url for url, _ in asked] == [sources.ARCHIVES[reference.DATASET]]
    assert asked[0][1].endswith("-cats_and_dogs_filtered.zip")


def test_the_download_cache_is_keyed_by_the_url_not_the_file_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Two servers' dataset.zip are two files: the second URL is asked, not answered with the first's bytes."""
    asked = []

    def fake_download(url, dest, sha256):
        asked.append(url)
        dest.write_bytes(url.encode())

    monkeypatch.setattr(download_stage, "download", fake_download)
    first = download_stage.cached_download("https://a.example/x/dataset.zip", tmp_path, None)
    second = download_stage.cached_download("https://b.example/y/dataset.zip", tmp_path, None)
    again = download_stage.cached_download("https://a.example/x/dataset.zip", tmp_path, None)
    assert asked == ["https://a.example/x/dataset.zip", "https://b.example/y/dataset.zip"]
    assert first != second and again == first and first.read_bytes() == b"https://a.example/x/dataset.zip"
    odd = download_stage.cached_download("https://c.example/data/..", tmp_path, None)  # no usable last segment
    assert odd.parent == tmp_path and odd.name.endswith("-download")


def test_a_pinned_cache_file_with_other_bytes_is_downloaded_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    calls = []
    monkeypatch.setattr(download_stage, "download", lambda url, dest, sha256: calls.append(sha256))
    cached = download_stage.cached_download("https://a.example/d.zip", tmp_path, None)
    assert calls == [None]
    cached.write_bytes(b"old bytes")
    download_stage.cached_download("https://a.example/d.zip", tmp_path, "0" * 64)
    assert calls == [None, "0" * 64]  # the pin does not match the cached file: download (and check) again


def test_a_compression_bomb_is_one_error_line_naming_the_member_and_the_param(project: Path, tmp_path: Path):
    archive = zip_tree(make_raw_tree(tmp_path / "tree", 2, 2), project / "bomb.zip")
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("my_dataset/train/cats/zeros.jpg", bytes(5 << 20))  # ~5 KB packed
    set_params(project, data={"source": "bomb.zip", "max_compression_ratio": 2})
    error = run_stage()
    assert error.startswith("error: ") and "\n" not in error
    assert "'my_dataset/train/cats/zeros.jpg'" in error and "compression bomb" in error
    assert "data.max_compression_ratio=2" in error
    assert not (project / "data" / "raw").exists()


SECRET_URL = "http://user:s3cret@127.0.0.1:{port}/data.zip?X-Amz-Signature=t0ken"


def test_credentials_in_the_url_are_never_printed_or_stored(project: Path, tmp_path: Path, monkeypatch, capsys):
    """Seen on the landed main: `https://user:secret@host/data.zip` was printed, written to manifest.json and three
    times into report.md."""
    set_params(project, data={"source": SECRET_URL.format(port=9)})  # port 9: nothing listens
    error = run_stage()
    assert error.startswith("error: could not download http://***@127.0.0.1:9/data.zip?X-Amz-Signature=***")
    archive = zip_tree(make_raw_tree(tmp_path / "tree", 2, 2), tmp_path / "data.zip")
    monkeypatch.setattr(download_stage, "download", lambda url, dest, sha256: dest.write_bytes(archive.read_bytes()))
    set_params(project, data={"source": SECRET_URL.format(port=8000)})
    download_stage.main(dvc_args("download"))
    shown = capsys.readouterr().out + (project / "data" / "raw" / "manifest.json").read_text()
    assert "s3cret" not in shown and "t0ken" not in shown and "user" not in shown
    assert json.loads((project / "data" / "raw" / "manifest.json").read_text())["source"] == (
        "http://***@127.0.0.1:8000/data.zip?X-Amz-Signature=***"
    )


def zip_members(archive: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            if name.endswith("/"):
                zf.mkdir(name)
            else:
                zf.writestr(name, data)
    return archive


def images(prefix: str, count: int, first_seed: int) -> dict[str, bytes]:
    return {f"{prefix}/{i}.jpg": jpeg_bytes(first_seed + i) for i in range(count)}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"ds/None/": b""}, "error: mine.zip: the class folder ds/None/ is empty; put its images in it, or delete"),
        (
            {"ds/None/.DS_Store": b"finder"},
            "error: mine.zip: the class folder ds/None/ holds no image, only .DS_Store (hidden and system files are "
            "left out of every dataset); put its images in it, or delete the folder",
        ),
    ],
    ids=["empty", "only_ds_store"],
)
def test_a_class_folder_without_files_is_one_line_naming_it(project: Path, extra: dict, expected: str):
    """Seen in issue 33: an empty ds/c gave `no dataset folder ... ds/ holds: a/, b/, c/`, and a folder of only
    .DS_Store vanished as a class (the archive became a two-class dataset with `ignored 1` as the only trace)."""
    zip_members(project / "mine.zip", {**images("ds/a", 3, 0), **images("ds/macro", 3, 10), **extra})
    set_params(project, data={"source": "mine.zip"})
    assert run_stage().startswith(expected)
    assert not (project / "data" / "raw").exists()
    assert [p.name for p in (project / "data").iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_one_class_is_the_fewer_than_two_classes_line(project: Path):
    zip_members(project / "mine.zip", images("ds/café", 4, 0))
    set_params(project, data={"source": "mine.zip"})
    assert run_stage() == (
        "error: mine.zip: a classifier needs at least two classes, found one class folder: ds/café/; put each "
        "class's images in a folder of its own beside it"
    )
    assert not (project / "data" / "raw").exists()


def test_the_download_line_counts_classes_not_class_folders(project: Path, capsys):
    """Seen in issue 33: `6 class folders` for 3 classes in train/ and validation/."""
    members = {}
    for seed, name in enumerate(("a", "None", "猫")):
        members |= images(f"ds/train/{name}", 2, 10 * seed) | images(f"ds/validation/{name}", 1, 10 * seed + 5)
    members["ds/train/a/.DS_Store"] = b"finder"
    zip_members(project / "mine.zip", members)
    set_params(project, data={"source": "mine.zip"})
    assert run_stage() == ""
    assert capsys.readouterr().out.splitlines()[-1] == (
        "download: mine.zip -> data/raw: 3 classes, 9 files (train 6, validation 3); ignored 1 (hidden 1)"
    )
