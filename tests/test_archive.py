"""Tests for stages.lib.archive: crafted zip/tar archives, good and hostile, built in tmp_path."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from stages.lib import archive as archive_module
from stages.lib.archive import ArchiveError, copy_folder, extract_archive
from stages.lib.file_names import ignore_reason
from tests.conftest import jpeg_bytes

JPEG = b"\xff\xd8\xff\xe0 not really a jpeg: the split stage judges content, extraction only names"
LIMITS = {"max_members": 100, "max_total_bytes": 64 << 20, "max_compression_ratio": 100}

# A dataset laid out like cats_and_dogs_filtered.zip, plus the clutter real archives carry.
GOOD_LAYOUT = {
    "cats_and_dogs_filtered/train/cats/cat.1.jpg": JPEG + b"1",
    "cats_and_dogs_filtered/train/dogs/dog.1.JPG": JPEG + b"2",
    "cats_and_dogs_filtered/validation/cats/cat.2.png": JPEG + b"3",
    "cats_and_dogs_filtered/validation/dogs/dog.2.jpeg": JPEG + b"4",
    "cats_and_dogs_filtered/vectorize.py": b"print('not an image')\n",
    "cats_and_dogs_filtered/train/cats/Thumbs.db": b"thumbs",
    "cats_and_dogs_filtered/train/.DS_Store": b"finder",
    "__MACOSX/cats_and_dogs_filtered/train/cats/._cat.1.jpg": b"resource fork",
    "__MACOSX/cats_and_dogs_filtered/._vectorize.py": b"resource fork",
}
GOOD_IMAGES = {name: data for name, data in GOOD_LAYOUT.items() if ignore_reason(name) is None}
GOOD_IGNORED = {  # by reason, in the archive's order
    "system_file": ["cats_and_dogs_filtered/train/cats/Thumbs.db"],
    "hidden": ["cats_and_dogs_filtered/train/.DS_Store"],
    "macosx": [
        "__MACOSX/cats_and_dogs_filtered/train/cats/._cat.1.jpg",
        "__MACOSX/cats_and_dogs_filtered/._vectorize.py",
    ],
}


def write_zip(path: Path, members: dict[str, bytes], *, folders: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder in folders:
            zf.mkdir(folder)
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_tar(path: Path, members: list[tuple[str | tarfile.TarInfo, bytes]], mode: str = "w") -> Path:
    """Members are (name or ready TarInfo header, data); data is only attached to regular files."""
    with tarfile.open(path, mode) as tar:
        for header, data in members:
            info = header if isinstance(header, tarfile.TarInfo) else tarfile.TarInfo(header)
            if info.isreg():
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def tar_header(name: str, member_type: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = member_type
    info.linkname = linkname
    return info


def files_under(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def patch_zip_bytes(path: Path, patch: Callable[[bytearray, int, int], None]) -> None:
    """Edit a single-member zip in place; `patch` gets the data and the local / central header offsets."""
    data = bytearray(path.read_bytes())
    patch(data, data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02"))
    path.write_bytes(bytes(data))


def assert_refused(archive: Path, dest: Path, *message_parts: str, **limits: int) -> None:
    """extract_archive raises ArchiveError naming the archive (and member), leaving nothing behind."""
    with pytest.raises(ArchiveError) as caught:
        extract_archive(archive, dest, **{**LIMITS, **limits})
    message = str(caught.value)
    assert str(archive) in message
    # Look for the other parts outside the archive path: tmp_path embeds the test name.
    rest = message.replace(str(archive), "")
    for part in message_parts:
        assert part in rest
    assert not dest.exists()
    # Nothing written anywhere else either: the archive is the only thing in tmp_path.
    assert sorted(archive.parent.rglob("*")) == [archive]


def test_a_name_with_a_carriage_return_is_skipped_and_counted_not_extracted(tmp_path: Path) -> None:
    """A \\r in a file name would split its row of the split stage's CSV in two; a \\n, predict's table."""
    archive = write_zip(tmp_path / "a.zip", {"train/cats/ok.jpg": jpeg_bytes(1), "train/cats/bad\r.jpg": jpeg_bytes(2)})
    ignored = extract_archive(archive, tmp_path / "out", **LIMITS)
    assert ignored == {"control_character": ["train/cats/bad\r.jpg"]}
    assert [p.name for p in (tmp_path / "out" / "train" / "cats").iterdir()] == ["ok.jpg"]


# --- good archives ------------------------------------------------------------------------------


def test_good_zip_extracts_all_but_hidden_and_system_files_and_counts_them(tmp_path: Path) -> None:
    folders = ("cats_and_dogs_filtered/", "cats_and_dogs_filtered/train/", "__MACOSX/", "empty/")
    archive = write_zip(tmp_path / "cats_and_dogs_filtered.zip", GOOD_LAYOUT, folders=folders)
    dest = tmp_path / "out"

    ignored = extract_archive(archive, dest, **LIMITS)

    assert ignored == GOOD_IGNORED
    assert files_under(dest) == GOOD_IMAGES
    # Directory entries are created, except skipped ones: no stray __MACOSX/ next to the dataset.
    assert sorted(path.name for path in dest.iterdir()) == ["cats_and_dogs_filtered", "empty"]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o644 for path in dest.rglob("*") if path.is_file())


def test_good_tar_gz_is_detected_by_content_and_ignores_archive_permissions(tmp_path: Path) -> None:
    setuid = tarfile.TarInfo("./cats_and_dogs_filtered/train/cats/cat.3.gif")
    setuid.mode = 0o4777
    members = [(tar_header("./", tarfile.DIRTYPE), b"")]
    members += [(f"./{name}", data) for name, data in GOOD_LAYOUT.items()]
    members += [(setuid, JPEG)]
    # Named .bin on purpose: the format comes from the bytes, not the file name.
    archive = write_tar(tmp_path / "download.bin", members, mode="w:gz")
    dest = tmp_path / "out"

    # A strict umask would give 0o600 if the mode were left to open(); 0o644 must be set explicitly.
    previous_umask = os.umask(0o077)
    try:
        ignored = extract_archive(archive, dest, **LIMITS)
    finally:
        os.umask(previous_umask)

    assert ignored == GOOD_IGNORED
    assert files_under(dest) == {**GOOD_IMAGES, "cats_and_dogs_filtered/train/cats/cat.3.gif": JPEG}
    assert stat.S_IMODE((dest / "cats_and_dogs_filtered/train/cats/cat.3.gif").stat().st_mode) == 0o644


def test_a_folder_holding_only_left_out_files_is_kept_empty_so_its_class_does_not_vanish(tmp_path: Path) -> None:
    """Seen in issue 33: a class folder of only .DS_Store vanished, with `ignored 1` as the only trace; kept empty,
    the layout names it. Folders that are left out themselves (__MACOSX/, .git/) are not created."""
    members = {"d/a/1.jpg": JPEG, "d/None/.DS_Store": b"finder", "d/macro/Thumbs.db": b"t", "d/.git/config": b"x"}
    members["__MACOSX/d/None/._x.jpg"] = b"fork"
    ignored = extract_archive(write_zip(tmp_path / "a.zip", members), tmp_path / "out", **LIMITS)
    assert ignored == {
        "hidden": ["d/None/.DS_Store", "d/.git/config"],
        "system_file": ["d/macro/Thumbs.db"],
        "macosx": ["__MACOSX/d/None/._x.jpg"],
    }
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "d", "d/None", "d/a", "d/a/1.jpg", "d/macro"
    ]  # fmt: skip


def test_ignored_members_do_not_count_towards_the_size_cap(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "a.zip", {"train/cat.jpg": JPEG, "__MACOSX/._cat.jpg": b"#" * 5000})
    dest = tmp_path / "out"

    ignored = extract_archive(archive, dest, **{**LIMITS, "max_members": 10, "max_total_bytes": len(JPEG)})

    assert ignored == {"macosx": ["__MACOSX/._cat.jpg"]}
    assert files_under(dest) == {"train/cat.jpg": JPEG}


def test_webp_and_tiff_photos_are_extracted_like_any_image(tmp_path: Path) -> None:
    """Seen on the landed main: WebP and TIFF were dropped at extraction as not images, though predict read them."""
    members = {"d/cats/a.webp": b"RIFF....WEBPVP8 ", "d/cats/b.tif": b"II*\x00", "d/dogs/c.HEIC": b"heic"}
    ignored = extract_archive(write_zip(tmp_path / "a.zip", members), tmp_path / "out", **LIMITS)
    assert ignored == {}
    assert files_under(tmp_path / "out") == members


def test_names_are_stored_in_nfc(tmp_path: Path) -> None:
    nfd = "cafe\u0301"
    archive = write_zip(tmp_path / "a.zip", {f"d/{nfd}/{nfd}.jpg": JPEG, "d/tea/t.jpg": JPEG})
    extract_archive(archive, tmp_path / "out", **LIMITS)
    assert sorted(files_under(tmp_path / "out")) == ["d/caf\u00e9/caf\u00e9.jpg", "d/tea/t.jpg"]


@pytest.mark.parametrize(
    ("first", "second", "named"),
    [
        ("d/caf\u00e9/a.jpg", "d/cafe\u0301/b.jpg", ("d/caf\u00e9", "d/cafe\u0301")),
        ("d/cats/caf\u00e9.jpg", "d/cats/cafe\u0301.jpg", ("d/cats/caf\u00e9.jpg", "d/cats/cafe\u0301.jpg")),
    ],
    ids=["folders", "files"],
)
def test_two_spellings_of_one_nfc_name_are_refused_naming_both(tmp_path: Path, first, second, named) -> None:
    """Seen on the landed main: the two folders of `café` became two classes and crashed the report."""
    archive = write_zip(tmp_path / "a.zip", {first: JPEG, second: JPEG + b"2"})
    with pytest.raises(ArchiveError) as refused:
        extract_archive(archive, tmp_path / "out", **LIMITS)
    spelled = f"{named[0]!r} and {named[1]!r} ({ascii(named[0])} and {ascii(named[1])})"
    assert f"{spelled} are one name once Unicode-normalised" in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_a_file_name_too_long_for_the_file_system_is_skipped_and_counted(tmp_path: Path) -> None:
    long_name = "猫" * 90 + ".jpg"  # 274 bytes in UTF-8
    archive = write_zip(tmp_path / "a.zip", {f"d/cats/{long_name}": JPEG, "d/cats/ok.jpg": JPEG})
    assert extract_archive(archive, tmp_path / "out", **LIMITS) == {"name_too_long": [f"d/cats/{long_name}"]}
    assert sorted(files_under(tmp_path / "out")) == ["d/cats/ok.jpg"]


def test_a_folder_name_too_long_for_the_file_system_is_refused_naming_the_member(tmp_path: Path) -> None:
    """Seen on the landed main: three chained tracebacks ending in OSError: [Errno 36] File name too long."""
    member = "d/" + "猫" * 90 + "/a.jpg"
    with pytest.raises(ArchiveError, match=r"its folder name is 270 bytes, over the 255 a name may have"):
        extract_archive(write_zip(tmp_path / "a.zip", {member: JPEG}), tmp_path / "out", **LIMITS)
    assert not (tmp_path / "out").exists()


# --- hostile or broken archives -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("member_name", "why"),
    [
        ("../evil.jpg", "'..'"),
        ("a/../../evil.jpg", "'..'"),
        ("..\\evil.jpg", "'..'"),
        ("/ABSOLUTE/evil.jpg", "absolute path"),
        ("C:/evil.jpg", "absolute path"),
        ("C:evil.jpg", "absolute path"),
        ("\\evil.jpg", "absolute path"),
    ],
)
def test_zip_path_escapes_are_refused(tmp_path: Path, member_name: str, why: str) -> None:
    # An absolute name pointing into tmp_path, so the "nothing written outside" check covers it.
    member_name = member_name.replace("/ABSOLUTE", str(tmp_path))
    # A good member first: refusal must not depend on the bad one coming first.
    archive = write_zip(tmp_path / "evil.zip", {"train/ok.jpg": JPEG, member_name: JPEG})

    assert_refused(archive, tmp_path / "out", repr(member_name), why)


@pytest.mark.parametrize(
    ("member_name", "why"),
    [("../evil.jpg", "'..'"), ("a/../../evil.jpg", "'..'"), ("/ABSOLUTE/evil.jpg", "absolute path")],
)
def test_tar_path_escapes_are_refused(tmp_path: Path, member_name: str, why: str) -> None:
    member_name = member_name.replace("/ABSOLUTE", str(tmp_path))
    archive = write_tar(tmp_path / "evil.tar", [("train/ok.jpg", JPEG), (member_name, JPEG)])

    assert_refused(archive, tmp_path / "out", repr(member_name), why)


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("train/cats/link.jpg")
    link.create_system = 3  # unix, where st_mode lives in the high bits of external_attr
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/ok.jpg", JPEG)
        zf.writestr(link, "../../evil.jpg")

    assert_refused(archive, tmp_path / "out", "'train/cats/link.jpg'", "symlink")


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (tar_header("train/link.jpg", tarfile.SYMTYPE, "../evil.jpg"), "symlink"),
        (tar_header("train/hard.jpg", tarfile.LNKTYPE, "/etc/passwd"), "hard link"),
        (tar_header("train/fifo.jpg", tarfile.FIFOTYPE), "device file or fifo"),
        (tar_header("train/tty.jpg", tarfile.CHRTYPE), "device file or fifo"),
        (tar_header("train/disk.jpg", tarfile.BLKTYPE), "device file or fifo"),
    ],
    ids=["symlink", "hardlink", "fifo", "char-device", "block-device"],
)
def test_tar_links_and_special_files_are_refused(tmp_path: Path, header: tarfile.TarInfo, why: str) -> None:
    archive = write_tar(tmp_path / "special.tar", [("train/ok.jpg", JPEG), (header, b"")])

    assert_refused(archive, tmp_path / "out", repr(header.name), why)


def test_too_many_zip_members_are_refused(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "many.zip", {f"train/{i}.jpg": JPEG for i in range(3)})

    assert_refused(archive, tmp_path / "out", "data.max_archive_members=2", "'train/2.jpg'", max_members=2)


def test_too_many_tar_members_are_refused(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "many.tar.gz", [(f"train/{i}.jpg", JPEG) for i in range(3)], mode="w:gz")

    assert_refused(archive, tmp_path / "out", "data.max_archive_members=2", "'train/2.jpg'", max_members=2)


def test_declared_size_over_the_cap_is_refused_before_writing(tmp_path: Path) -> None:
    # Each member fits; the second one takes the declared total over the cap and is named.
    archive = write_zip(tmp_path / "big.zip", {"train/a.jpg": b"a" * 600, "train/b.jpg": b"b" * 600})

    assert_refused(archive, tmp_path / "out", "'train/b.jpg'", "data.max_archive_bytes=1000", max_total_bytes=1000)


def test_declared_tar_size_over_the_cap_is_refused(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "big.tar", [("train/a.jpg", b"a" * 2000)])

    assert_refused(archive, tmp_path / "out", "'train/a.jpg'", "data.max_archive_bytes=1000", max_total_bytes=1000)


def test_zip_member_lying_about_its_size_is_refused(tmp_path: Path) -> None:
    """A member declaring 100 bytes whose deflate stream holds 50 000.

    zipfile itself stops reading at the declared file_size, so more bytes than declared never come
    out of it: the lie surfaces as a CRC mismatch, which must end as ArchiveError with no tree left.
    The byte-counting guard behind it is exercised in the two tests that follow.
    """
    archive = write_zip(tmp_path / "bomb.zip", {"train/bomb.jpg": b"\0" * 50_000})

    def declare_100_bytes(data: bytearray, local: int, central: int) -> None:
        struct.pack_into("<I", data, local + 22, 100)  # uncompressed size in the local header
        struct.pack_into("<I", data, central + 24, 100)  # and in the central directory

    patch_zip_bytes(archive, declare_100_bytes)

    assert_refused(archive, tmp_path / "out", "'train/bomb.jpg'", "corrupt")


def test_member_yielding_more_than_declared_stops_extraction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-in for a reader that does not enforce the declared size (which zipfile/tarfile do):
    # the member declares len(JPEG) bytes but yields 3 MiB.
    archive = write_zip(tmp_path / "liar.zip", {"train/a.jpg": JPEG, "train/b.jpg": JPEG})
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info: io.BytesIO(b"x" * (3 << 20)))

    assert_refused(archive, tmp_path / "out", "'train/a.jpg'", f"more than its declared {len(JPEG)} bytes")


def test_copy_stops_when_the_running_total_passes_the_budget() -> None:
    # Not reachable through extract_archive while declared sizes are pre-checked and enforced per
    # member; this pins the second guard so it cannot silently rot.
    source, out = io.BytesIO(b"x" * 3000), io.BytesIO()
    with pytest.raises(ArchiveError, match="data.max_archive_bytes"):
        budget = archive_module._Limits(total_bytes=1000, ratio=100)
        archive_module._copy_capped(
            source, out, declared_size=5000, budget=budget, packed_read=None, where="member 'm'"
        )
    assert len(out.getvalue()) <= 1000


def test_encrypted_zip_member_is_refused(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "secret.zip", {"train/cat.jpg": JPEG})

    def set_encrypted_flag(data: bytearray, local: int, central: int) -> None:
        for flag_offset in (local + 6, central + 8):
            (flags,) = struct.unpack_from("<H", data, flag_offset)
            struct.pack_into("<H", data, flag_offset, flags | 0x1)

    patch_zip_bytes(archive, set_encrypted_flag)

    assert_refused(archive, tmp_path / "out", "'train/cat.jpg'", "encrypted")


def test_zip_with_bad_crc_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "crc.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("train/cat.jpg", JPEG)
    data = bytearray(archive.read_bytes())
    data[data.find(JPEG) + 5] ^= 0xFF  # flip one byte of the stored (uncompressed) data
    archive.write_bytes(bytes(data))

    assert_refused(archive, tmp_path / "out", "'train/cat.jpg'", "corrupt")


def test_truncated_zip_is_refused_as_truncated(tmp_path: Path) -> None:
    full = write_zip(tmp_path / "full.zip", GOOD_IMAGES).read_bytes()
    (tmp_path / "full.zip").unlink()
    archive = tmp_path / "cut.zip"
    archive.write_bytes(full[: len(full) // 2])

    assert_refused(archive, tmp_path / "out", "not a zip or tar archive", "truncated")


def test_truncated_tar_gz_is_refused(tmp_path: Path) -> None:
    # Incompressible data, so cutting the file in half really loses members, not just padding.
    noise = bytes(range(256)) * 64
    full = write_tar(tmp_path / "full.tgz", [(f"train/{i}.jpg", noise[i:] + noise[:i]) for i in range(20)], "w:gz")
    data = full.read_bytes()
    full.unlink()
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(data[: len(data) // 2])

    assert_refused(archive, tmp_path / "out", "corrupt or truncated")


def test_text_file_is_not_an_archive(tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    archive.write_text("<html>404 Not Found</html>\n")

    assert_refused(archive, tmp_path / "out", "is not a zip or tar archive")


def test_duplicate_member_is_refused_not_overwritten(tmp_path: Path) -> None:
    archive = tmp_path / "dup.zip"
    with zipfile.ZipFile(archive, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("train/cat.jpg", JPEG)
        zf.writestr("train/cat.jpg", b"second")

    assert_refused(archive, tmp_path / "out", "'train/cat.jpg'", "clashes")


def test_existing_destination_is_left_alone(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "a.zip", GOOD_IMAGES)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")

    with pytest.raises(FileExistsError, match="already exists"):
        extract_archive(archive, dest, **LIMITS)
    assert (dest / "keep.txt").read_text() == "mine"


# --- compression bombs --------------------------------------------------------------------------
# A ratio of 2 stands in for the default 100 so that bombs stay a few MiB: past the 1 MiB every member is
# credited, 5 MiB of zeros (packed: ~5 KB) is over 2 x (5 KB + 1 MiB); 5 MiB of random bytes (~1:1) is not.
BOMB = bytes(5 << 20)
NOISE = os.urandom(5 << 20)


@pytest.mark.parametrize("suffix", ["zip", "tar.gz", "tar.xz"])
def test_a_member_that_unpacks_far_beyond_its_packed_size_is_refused(tmp_path: Path, suffix: str) -> None:
    members = {"data/train/cats/ok.jpg": NOISE, "data/train/cats/bomb.jpg": BOMB}
    if suffix == "zip":
        archive = write_zip(tmp_path / "bomb.zip", members)
    else:
        archive = write_tar(tmp_path / f"bomb.{suffix}", list(members.items()), mode=f"w:{suffix.split('.')[1]}")
    assert_refused(archive, tmp_path / "out", "'data/train/cats/bomb.jpg'", "compression bomb", max_compression_ratio=2)


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    archive = write_zip(tmp_path / "bomb.zip", {"data/train/cats/bomb.jpg": BOMB})
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *_: pytest.fail("a member was opened"))
    assert_refused(archive, tmp_path / "out", "unpacks", "data.max_compression_ratio=2", max_compression_ratio=2)


def test_a_tar_gz_bomb_is_stopped_after_the_allowance_not_at_its_size(tmp_path: Path, monkeypatch) -> None:
    archive = write_tar(tmp_path / "bomb.tar.gz", [("data/train/cats/bomb.jpg", bytes(16 << 20))], mode="w:gz")
    written: list[int] = []
    real_copy = archive_module._copy_capped

    def copy_and_count(source, out, **kwargs):
        try:
            return real_copy(source, out, **kwargs)
        finally:
            written.append(out.tell())

    monkeypatch.setattr(archive_module, "_copy_capped", copy_and_count)
    assert_refused(archive, tmp_path / "out", "compression bomb", max_compression_ratio=2)
    assert 0 < sum(written) <= 3 << 20  # 2 x (packed + 1 MiB), not the 16 MiB the member holds


def test_images_that_pack_well_but_are_small_or_barely_compress_are_extracted(tmp_path: Path) -> None:
    # A flat-colour BMP packs at hundreds to one, but a small member is never judged: only what is beyond 1 MiB.
    members = {"data/train/cats/flat.bmp": bytes(512 << 10), "data/train/cats/photo.jpg": NOISE}
    for archive in (
        write_zip(tmp_path / "ok.zip", members),
        write_tar(tmp_path / "ok.tar.gz", list(members.items()), mode="w:gz"),
    ):
        dest = tmp_path / archive.name.replace(".", "_")
        assert extract_archive(archive, dest, **{**LIMITS, "max_compression_ratio": 2}) == {}
        assert files_under(dest) == members


# --- names that are not UTF-8 -------------------------------------------------------------------


def latin1_tar(path: Path, names: list[str]) -> Path:
    """A tar written on a Latin-1 system: its names' bytes are not UTF-8 (Python reads them with surrogates)."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(JPEG)
            tar.addfile(info, io.BytesIO(JPEG))
    return path


def test_a_file_name_that_is_not_utf8_is_skipped_and_counted(tmp_path: Path) -> None:
    """Seen while adding folder sources: a tar holding `caf\\xe9.jpg` ended in a UnicodeEncodeError traceback."""
    archive = latin1_tar(tmp_path / "a.tar", ["d/a/1.jpg", "d/b/caf\u00e9.jpg", "d/b/2.jpg"])
    ignored = extract_archive(archive, tmp_path / "out", **LIMITS)
    assert ignored == {"not_utf8": ["d/b/caf\udce9.jpg"]}
    assert sorted(files_under(tmp_path / "out")) == ["d/a/1.jpg", "d/b/2.jpg"]


def test_a_folder_name_that_is_not_utf8_is_refused_naming_its_bytes(tmp_path: Path) -> None:
    archive = latin1_tar(tmp_path / "a.tar", ["d/a/1.jpg", "d/caf\u00e9/2.jpg"])
    assert_refused(archive, tmp_path / "out", "its folder name b'caf\\xe9' is not UTF-8 text; rename the folder")


# --- folder sources -----------------------------------------------------------------------------


def write_folder(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def assert_folder_refused(folder: Path, dest: Path, *message_parts: str, **limits: int) -> None:
    """copy_folder raises ArchiveError naming the folder and what it refused, leaving no destination."""
    with pytest.raises(ArchiveError) as caught:
        copy_folder(folder, dest, **{**FOLDER_LIMITS, **limits})
    message = str(caught.value)
    assert message.startswith(f"{folder}: ") or f" of {folder}" in message, message
    for part in message_parts:
        assert part in message, message
    assert not dest.exists()


FOLDER_LIMITS = {"max_members": 100, "max_total_bytes": 64 << 20}


def test_a_folder_is_copied_by_the_rules_of_an_archive_s_members(tmp_path: Path) -> None:
    """The same left-out names and the same tree as the zip of the same files; a left-out folder is not walked."""
    folder = write_folder(tmp_path / "photos", {**GOOD_LAYOUT, "cats_and_dogs_filtered/.git/objects/ab": b"git"})
    ignored = copy_folder(folder, tmp_path / "out", **FOLDER_LIMITS)
    assert files_under(tmp_path / "out") == GOOD_IMAGES  # what extracting the zip of these files gives
    assert ignored == {
        "hidden": ["cats_and_dogs_filtered/.git", "cats_and_dogs_filtered/train/.DS_Store"],
        "system_file": ["cats_and_dogs_filtered/train/cats/Thumbs.db"],
        "macosx": ["__MACOSX"],
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cats_and_dogs_filtered"]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o644 for path in (tmp_path / "out").rglob("*") if path.is_file())


def test_a_folder_s_names_are_stored_in_nfc_and_two_spellings_of_one_are_refused(tmp_path: Path) -> None:
    nfd = "cafe\u0301"
    folder = write_folder(tmp_path / "photos", {f"d/{nfd}/{nfd}.jpg": JPEG, "d/tea/t.jpg": JPEG})
    copy_folder(folder, tmp_path / "out", **FOLDER_LIMITS)
    assert sorted(files_under(tmp_path / "out")) == ["d/caf\u00e9/caf\u00e9.jpg", "d/tea/t.jpg"]
    write_folder(folder, {"d/caf\u00e9/b.jpg": JPEG})  # macOS wrote one, Linux the other
    assert_folder_refused(folder, tmp_path / "again", "are one name once Unicode-normalised")


@pytest.mark.parametrize("target", ["file", "folder"])
def test_a_link_inside_a_folder_is_refused_naming_it_and_its_target(tmp_path: Path, target: str) -> None:
    """A link may point anywhere (a home directory's keys would be copied into data/raw and pushed with it), and DVC
    does not follow a linked folder inside a dependency: refused, not followed."""
    outside = write_folder(tmp_path / "outside", {"x.jpg": JPEG})
    folder = write_folder(tmp_path / "photos", {"a/1.jpg": JPEG, "b/2.jpg": JPEG})
    (folder / "b" / "link").symlink_to(outside / "x.jpg" if target == "file" else outside)
    assert_folder_refused(
        folder, tmp_path / "out", "refusing member 'b/link': it is a symlink (to ", "put the files themselves"
    )


def test_a_fifo_inside_a_folder_is_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos", {"a/1.jpg": JPEG})
    os.mkfifo(folder / "a" / "pipe.jpg")  # reading it would block the stage forever
    assert_folder_refused(folder, tmp_path / "out", "'a/pipe.jpg'", "not a regular file or directory")


def test_a_folder_past_the_caps_is_refused(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos", {"a/1.jpg": b"1" * 600, "a/2.jpg": b"2" * 600})
    assert_folder_refused(folder, tmp_path / "out", "data.max_archive_members=2", "'a/2.jpg'", max_members=2)
    assert_folder_refused(folder, tmp_path / "out", "'a/2.jpg'", "data.max_archive_bytes=1000", max_total_bytes=1000)


def test_a_folder_s_names_that_are_not_utf8_are_skipped_or_refused_as_in_a_tar(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "photos", {"d/a/1.jpg": JPEG, "d/b/2.jpg": JPEG})
    (folder / "d" / "b" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(JPEG)
    assert copy_folder(folder, tmp_path / "out", **FOLDER_LIMITS) == {"not_utf8": ["d/b/caf\udce9.jpg"]}
    assert sorted(files_under(tmp_path / "out")) == ["d/a/1.jpg", "d/b/2.jpg"]
    write_folder(folder, {os.fsdecode(b"d/caf\xe9/3.jpg"): JPEG})
    assert_folder_refused(folder, tmp_path / "again", "its folder name b'caf\\xe9' is not UTF-8 text")
