from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from stages import download as download_stage
from stages.lib import params, reference, sources
from tests.conftest import ROOT, dvc_args, jpeg_bytes, make_raw_tree, set_params


def zip_tree(tree: Path, archive: Path, top: str = "my_dataset") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(tree).as_posix()}")
        zf.writestr(f"{top}/__MACOSX/._cat.jpg", b"resource fork")
        zf.writestr(f"{top}/vectorize.py", b"print('hi')\n")
    return archive


def sha256sum_of_the_files(raw: Path) -> str:
    """manifest.json's sha256 by the coreutils command docs/datasets.md gives (run in data/raw)."""
    (command,) = re.findall(r"^cd data/raw && (.*)$", (ROOT / "docs" / "datasets.md").read_text(), re.M)
    done = subprocess.run(["sh", "-c", command], cwd=raw, capture_output=True, text=True, check=True)
    return done.stdout.split()[0]


def run_stage(capsys=None) -> str:
    """Run the stage as `python -m stages.download` would; return the error line, or '' on success."""
    try:
        download_stage.run(lambda: download_stage.main(dvc_args("download")))
    except SystemExit as exc:
        return str(exc.code)
    return ""


def test_local_archive_is_extracted_with_manifest(project: Path, tmp_path: Path):
    zip_tree(make_raw_tree(tmp_path / "tree", 3, 2), project / "my.zip")
    set_params(project, data={"source": "my.zip"})
    view = download_stage.main(dvc_args("download"))
    assert view.read == {k for k in params.all_keys(params.load()) if k.startswith("data.")} | {"seed"}
    raw = project / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["manifest.json", "train", "validation"]
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["files"] == {"train/cats": 3, "train/dogs": 3, "validation/cats": 2, "validation/dogs": 2}
    assert manifest["ignored"] == {"macosx": 1, "outside_layout": 1}  # vectorize.py beside the split folders
    assert manifest["source"] == "my.zip" and manifest["archive"] == "my.zip" and "archive_sha256" not in manifest
    assert manifest["bytes"] == sum(p.stat().st_size for p in raw.rglob("*.jpg"))  # the images', not the archive's
    assert manifest["sha256"] == sha256sum_of_the_files(raw)


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


# --- local sources: a folder or an archive, under archives/ ------------------------------------------------------


def photos(root: Path) -> Path:
    """A folder of split folders of class folders, with the split names of many public sets (training/, testing/) and
    odd class names, and a .DS_Store."""
    for index, name in enumerate(("None", "猫", "macro")):
        for split, count in (("training", 3), ("testing", 2)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                (root / split / name / f"{i}.jpg").write_bytes(jpeg_bytes(100 * index + 10 * (split == "testing") + i))
    (root / "training" / ".DS_Store").write_bytes(b"finder")
    return root


def zip_folder(tree: Path, archive: Path, compression: int, reverse: bool) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression) as zf:
        for path in sorted((p for p in tree.rglob("*") if p.is_file()), reverse=reverse):
            zf.write(path, f"ds/{path.relative_to(tree).as_posix()}")
    return archive


def raw_files(project: Path) -> dict[str, bytes]:
    raw = project / "data" / "raw"
    return {p.relative_to(raw).as_posix(): p.read_bytes() for p in sorted(raw.rglob("*")) if p.is_file()}


def test_a_folder_source_under_archives_gives_data_raw_and_a_content_hash(project: Path, capsys):
    """Issue 30: `data.source=/path/to/folder` was refused, and `training/` + `testing/` too."""
    photos(project / "archives" / "photos")
    set_params(project, data={"source": "archives/photos"})
    view = download_stage.main(dvc_args("download"))
    assert view.read == {k for k in params.all_keys(params.load()) if k.startswith("data.")} | {"seed"}
    assert capsys.readouterr().out.splitlines() == [
        "download: archives/photos -> data/raw: 3 classes, 15 files (train 9, validation 6); ignored 1 (hidden 1)"
    ]  # and no warning: DVC sees archives/ change
    raw = project / "data" / "raw"
    manifest = json.loads((raw / "manifest.json").read_text())
    images = {name: data for name, data in raw_files(project).items() if name != "manifest.json"}
    assert manifest == {
        "source": "archives/photos",
        "folder": "photos",
        "sha256": sha256sum_of_the_files(raw),
        "bytes": sum(len(data) for data in images.values()),
        "files": {f"{split}/{name}": 3 if split == "train" else 2 for split in ("train", "validation")
                  for name in ("None", "macro", "猫")},
        "ignored": {"hidden": 1},
    }  # fmt: skip


def test_the_same_images_give_the_same_data_raw_however_packed(project: Path):
    """What keeps split and all after it from re-running when only the packing changed: data/raw, manifest included,
    holds the images and the source's name, not the archive's bytes; a folder of them has the same content hash."""
    tree = photos(project / "tree")
    set_params(project, data={"source": "archives/mine.zip"})
    runs = []
    for compression, reverse in ((zipfile.ZIP_DEFLATED, False), (zipfile.ZIP_STORED, True)):
        archive = zip_folder(tree, project / "archives" / "mine.zip", compression, reverse)
        download_stage.main(dvc_args("download"))
        runs.append((archive.read_bytes(), raw_files(project)))
    (first_zip, first_raw), (second_zip, second_raw) = runs
    assert first_zip != second_zip and first_raw == second_raw

    shutil.move(tree, project / "archives" / "mine")
    set_params(project, data={"source": "archives/mine"})
    download_stage.main(dvc_args("download"))
    from_folder = raw_files(project)
    manifests = [json.loads(files.pop("manifest.json")) for files in (from_folder, first_raw)]
    assert from_folder == first_raw
    assert manifests[0]["sha256"] == manifests[1]["sha256"] and manifests[0]["bytes"] == manifests[1]["bytes"]


def test_a_local_source_outside_archives_works_with_one_warning_line_saying_how_to_bring_it_in(
    project: Path, tmp_path: Path, capsys
):
    """DVC hashes archives/ (a dep of download in dvc.yaml), not a path named by a param: elsewhere, a change to the
    source goes unseen, and the line says so and what to do, for a folder and for an archive."""
    elsewhere = photos(tmp_path / "elsewhere" / "photos")
    zip_folder(elsewhere, tmp_path / "elsewhere" / "mine.zip", zipfile.ZIP_DEFLATED, reverse=False)
    for source in (str(elsewhere), str(tmp_path / "elsewhere" / "mine.zip")):
        set_params(project, data={"source": source})
        assert run_stage() == ""
        out, err = capsys.readouterr()
        assert err.splitlines() == [
            f"download: warning: data.source {source} is outside archives/, so DVC does not see it change: after "
            f"changing it run dvc repro -f download; better, bring it in: dvc import-url {source} "
            f"archives/{Path(source).name}, then data.source: archives/{Path(source).name} "
            "(docs/datasets.md#local-sources-a-folder-or-an-archive)"
        ]
        out = out.splitlines()
        assert out[0].startswith(f"download: {source} -> data/raw: 3 classes, 15 files") and len(out) == 1


def test_a_folder_linked_into_archives_is_not_seen_by_dvc_and_says_so(project: Path, tmp_path: Path, capsys):
    """DVC does not follow a linked folder inside a dependency: archives/photos -> elsewhere is outside, for DVC."""
    elsewhere = photos(tmp_path / "elsewhere" / "photos")
    (project / "archives").mkdir()
    (project / "archives" / "linked").symlink_to(elsewhere)
    set_params(project, data={"source": "archives/linked"})
    assert run_stage() == ""
    assert capsys.readouterr().err.splitlines() == [
        f"download: warning: data.source archives/linked is in archives/ through a link to {elsewhere}, which DVC "
        "does not follow, so DVC does not see it change: after changing it run dvc repro -f download; better, bring "
        f"it in: rm archives/linked && dvc import-url {elsewhere} archives/linked "
        "(docs/datasets.md#local-sources-a-folder-or-an-archive)"
    ]  # the link replaced by the data: data.source stays


def test_a_link_inside_a_folder_source_is_one_error_line_and_nothing_is_written(project: Path, tmp_path: Path):
    folder = photos(project / "archives" / "photos")
    (tmp_path / "secret").write_text("a key")
    (folder / "training" / "None" / "3.jpg").symlink_to(tmp_path / "secret")
    set_params(project, data={"source": "archives/photos"})
    assert run_stage() == (
        f"error: archives/photos: refusing member 'training/None/3.jpg': it is a symlink (to '{tmp_path / 'secret'}'); "
        "put the files themselves in the folder (a link may point anywhere, and DVC does not see a linked folder "
        "change)"
    )
    assert not (project / "data" / "raw").exists()
    assert [p.name for p in (project / "data").iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"source": "archives/photos", "sha256": "0" * 64},
            "error: params.yaml: data.sha256: pins an archive's bytes, and data.source archives/photos is a folder; "
            "set it to null (manifest.json records the folder's content sha256)",
        ),
        (
            {"source": "archives/fotos"},
            "error: params.yaml: data.source: must be a named dataset (cats_and_dogs_filtered, hotdog, mnist, "
            "fashion_mnist, cifar10, cifar100), 'sample', an http(s) URL, a local archive path ending in .zip, .tar, "
            ".tar.gz, .tgz or a local folder (got 'archives/fotos', which is no folder here; a local path is relative "
            "to the project root)",
        ),
        ({"source": "."}, "error: data.source: . holds data/raw, which the download stage writes; name the folder"),
        ({"source": "data/raw/train"}, "error: data.source: data/raw/train is inside data/raw, which the download"),
    ],
    ids=["sha256_pin", "no_such_folder", "project_root", "inside_the_output"],
)
def test_a_folder_source_that_cannot_be_right_is_one_line(project: Path, data: dict, expected: str):
    photos(project / "archives" / "photos")
    (project / "data" / "raw" / "train").mkdir(parents=True)
    set_params(project, data=data)
    assert run_stage().startswith(expected)
    assert (project / "data" / "raw" / "train").is_dir()  # the previous output is as it was


def test_a_downloaded_archive_s_bytes_are_recorded_for_data_sha256(project: Path, tmp_path: Path, monkeypatch):
    """Unlike a local archive's (DVC hashes it): a download is known by its bytes, which data.sha256 pins."""
    archive = zip_tree(make_raw_tree(tmp_path / "tree", 2, 2), tmp_path / "data.zip")
    monkeypatch.setattr(download_stage, "download", lambda url, dest, sha256: dest.write_bytes(archive.read_bytes()))
    set_params(project, data={"source": "https://example.org/data.zip"})
    assert run_stage() == ""
    manifest = json.loads((project / "data" / "raw" / "manifest.json").read_text())
    assert manifest["archive_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert manifest["sha256"] == sha256sum_of_the_files(project / "data" / "raw")


def test_the_warning_s_docs_pointer_leads_to_the_heading():
    page, _, anchor = download_stage.LOCAL_SOURCES_DOCS.partition("#")
    headings = re.findall(r"^#+ (.+)$", (ROOT / page).read_text(), re.M)
    assert anchor in {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
