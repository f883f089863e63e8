"""Safe extraction of the dataset archive (.zip, .tar, .tar.gz/.tgz), and the same rules for a folder source.

The archive comes from the network or from a path the user typed, so it is treated as hostile:
every member is checked before anything is written (no absolute paths, no '..', no links or
device files, bounded member count and declared size, bounded compression ratio), the bytes actually
written are counted while streaming (a zip bomb may lie about its size), and on any failure the
destination folder is removed so no half-extracted tree is left behind.

Error messages name the params that set the caps (data.max_archive_members, data.max_archive_bytes,
data.max_compression_ratio). The ratio bound: photos barely compress (JPEG and PNG members pack at about 1:1,
raw BMP photos at 1.2-1.6:1), while a member of zeros packs at ~1000:1. A zip member's packed size is known up
front, so a bomb is refused before a byte of it is written; a .tar.gz is one compressed stream, so a tar
member's packed bytes are counted from the archive file's read position while it is written, and it is stopped
early.

Hidden files, macOS metadata, system files (Thumbs.db) and names with a control character are not extracted
(file_names.py decides, for predict too): they are listed by reason so the download stage can record what it left
out, and their folder is kept (a class folder holding only .DS_Store stays, empty, for layouts.py to name, instead of
vanishing as a class). Every other file is extracted whatever its name: what is an image is decided by its content,
in one place (images.py), so the pipeline and `predict` accept the same files.

Names are stored as Unicode NFC (macOS tools write NFD, Linux tools NFC): two members that are one name once
normalised, such as the folders `café` written both ways, are refused, naming both. A file name longer than the
file system allows (255 bytes: 85 CJK characters) is skipped and counted; a folder name that long is refused, as
skipping it would drop a class. A file name that is not UTF-8 text (a tar or a folder written on a Latin-1 system)
is skipped and counted (`not_utf8`); a folder name that is not is refused, for the same reason.

A folder source (`copy_folder`) is read as an archive whose members are its files: the same left-out names, NFC,
name lengths, member and byte caps (no compression ratio: nothing is packed), into the same tree. A link inside it
is refused, naming it: a link may point anywhere (out of the user's folder, into a home directory), and DVC does not
follow a linked folder, so the pipeline would not see its images change. A left-out folder (`.git/`, `__MACOSX/`)
is not walked: it is left out whole, counted once.
"""

from __future__ import annotations

import errno
import gzip
import lzma
import os
import re
import shutil
import stat
import tarfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any

from stages.lib.errors import PipelineError
from stages.lib.file_names import ignore_reason, left_out_folder


# A PipelineError so that a stage reports it as one line on stderr, like any other fixable input problem.
class ArchiveError(PipelineError):
    """Archive refused or unreadable; message names the archive and the offending member."""


_COPY_CHUNK_BYTES = 1 << 20
# Packed bytes credited to every member before its ratio is judged: members under max_compression_ratio MiB are never
# refused by ratio (a small flat-colour image may pack well beyond it), and the decompressor's read-ahead
# (up to 128 KiB past the member in a .tar.gz) cannot make a large member look like a bomb.
_RATIO_SLACK_BYTES = 1 << 20
_EXTRACTED_FILE_MODE = 0o644
# "C:/x" and "C:x" are rooted on Windows; refuse them even on posix so the archive is safe everywhere.
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# How the stdlib readers report a damaged archive. Plain OSError is deliberately absent: it would
# also catch write errors (disk full) and mislabel them as a corrupt archive.
_CORRUPT_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    gzip.BadGzipFile,
    NotImplementedError,  # zip compression method the stdlib cannot decode
)
# Leading bytes of formats that failed detection, to tell "truncated download" from "wrong file".
_MAGIC_HINTS = {
    b"PK\x03\x04": "it starts like a zip file, so it is probably truncated or corrupt",
    b"\x1f\x8b": "it starts like gzip data, so it is probably a truncated .tar.gz or not a tarball",
}


@dataclass(frozen=True)
class _Member:
    """One archive entry, already checked: `path` is a safe relative posix path."""

    name: str  # as stored in the archive, for error messages
    path: str
    is_dir: bool
    declared_size: int  # uncompressed size the archive claims; 0 for directories
    packed_size: int | None  # compressed size a zip records; None in a tar (one stream for all members)
    ignore: str | None  # file_names.ignore_reason() for files; None for directories
    handle: Any  # ZipInfo or TarInfo, to open the member for reading


def extract_archive(
    archive: Path, dest: Path, *, max_members: int, max_total_bytes: int, max_compression_ratio: float
) -> dict[str, list[str]]:
    """Safely extract a .zip, .tar or .tar.gz/.tgz archive into `dest`, which must not exist yet.

    Returns the paths (relative to `dest`) of the members left out, by reason in the archive's order, e.g.
    {"hidden": ["d/cats/.DS_Store"], "system_file": ["d/Thumbs.db"]}.
    Raises ArchiveError if the archive is not a zip/tar, is corrupt, or holds anything unsafe
    (see the module docstring), including a member that unpacks to more than `max_compression_ratio` times its packed
    bytes (plus _RATIO_SLACK_BYTES); `dest` is then removed and nothing exists outside it.
    Raises FileExistsError if `dest` exists (it is not ours to delete) and FileNotFoundError
    if `archive` does not.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise FileExistsError(f"cannot extract {archive}: destination {dest} already exists; remove it first")
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist or is not a file")
    try:
        limits = _Limits(max_total_bytes, max_compression_ratio)
        return _extract_by_format(archive, dest, max_members=max_members, limits=limits)
    except _CORRUPT_ARCHIVE_ERRORS as exc:
        raise _unreadable(str(archive), exc) from exc


def copy_folder(folder: Path, dest: Path, *, max_members: int, max_total_bytes: int) -> dict[str, list[str]]:
    """Copy a folder source into `dest` (which must not exist yet) by the rules extract_archive applies to an
    archive's members (the module docstring); returns what it left out, by reason, as extract_archive does.
    Raises ArchiveError, naming the folder and the entry, for a link, a device file or fifo, an unreadable entry,
    more than `max_members` entries or more than `max_total_bytes` bytes; `dest` is then removed."""
    folder, dest = Path(folder), Path(dest)
    if dest.exists():
        raise FileExistsError(f"cannot copy {folder}: destination {dest} already exists; remove it first")
    members = _folder_members(folder, max_members)
    limits = _Limits(max_total_bytes, ratio=float("inf"))  # nothing is packed
    return _extract_members(folder, members, _open_file(folder), dest, limits, packed_position=None)


def _folder_members(folder: Path, max_members: int) -> list[_Member]:
    """Every entry under `folder`, sorted, as members (the handle: its path); a left-out folder is one member."""
    members: list[_Member] = []

    def walk(directory: Path, parts: tuple[str, ...]) -> None:
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            raise ArchiveError(f"{folder}: cannot read {directory}: {exc.strerror}; make it readable") from None
        for entry in entries:
            name = "/".join((*parts, entry.name))
            if len(members) >= max_members:
                raise _too_many_members(folder, name, max_members)
            mode = entry.stat(follow_symlinks=False).st_mode
            path = "/".join(unicodedata.normalize("NFC", part) for part in (*parts, entry.name))
            if stat.S_ISLNK(mode):
                raise _refused(
                    folder,
                    name,
                    f"it is a symlink (to {os.readlink(entry.path)!r}); put the files themselves in the folder (a "
                    "link may point anywhere, and DVC does not see a linked folder change)",
                )
            if stat.S_ISDIR(mode):
                reason = left_out_folder((*parts, entry.name))
                if reason is not None:  # .git/, __MACOSX/: left out whole, not walked
                    members.append(_Member(name, path, False, 0, None, reason, None))
                    continue
                members.append(_Member(name, path, True, 0, None, None, None))
                walk(Path(entry.path), (*parts, entry.name))
            elif stat.S_ISREG(mode):
                size = entry.stat(follow_symlinks=False).st_size
                members.append(_Member(name, path, False, size, None, _file_ignore_reason(path), Path(entry.path)))
            else:
                raise _refused(folder, name, "it is not a regular file or directory")

    walk(folder, ())
    return members


def _open_file(folder: Path) -> Callable[[Path], IO[bytes]]:
    def open_file(path: Path) -> IO[bytes]:
        try:
            return path.open("rb")
        except OSError as exc:
            raise ArchiveError(f"{folder}: cannot read {path}: {exc.strerror}; make it readable") from None

    return open_file


@dataclass(frozen=True)
class _Limits:
    total_bytes: int  # all members together, as written
    ratio: float  # unpacked / (packed + _RATIO_SLACK_BYTES), per member


def _extract_by_format(archive: Path, dest: Path, *, max_members: int, limits: _Limits) -> dict[str, list[str]]:
    # Tar is tried first: its header checksum sits at offset 0, whereas is_zipfile() accepts any
    # file with a zip end record in its last 64 KiB, e.g. a tar whose last member is a zip.
    if tarfile.is_tarfile(archive):
        # Opened here, not by name: the raw file's position is how many packed bytes were read so far.
        with archive.open("rb") as raw, tarfile.open(fileobj=raw) as tar:
            members = _tar_members(archive, tar, max_members)
            return _extract_members(archive, members, tar.extractfile, dest, limits, packed_position=raw.tell)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = _zip_members(archive, zf, max_members)
            return _extract_members(archive, members, zf.open, dest, limits, packed_position=None)
    raise ArchiveError(_not_an_archive_message(archive))


def _not_an_archive_message(archive: Path) -> str:
    with archive.open("rb") as file:
        head = file.read(4)
    hint = next((text for magic, text in _MAGIC_HINTS.items() if head.startswith(magic)), None)
    return f"{archive} is not a zip or tar archive" + (f" ({hint})" if hint else "")


def _zip_members(archive: Path, zf: zipfile.ZipFile, max_members: int) -> list[_Member]:
    infos = zf.infolist()
    if len(infos) > max_members:
        raise _too_many_members(archive, infos[max_members].filename, max_members)
    members = []
    for info in infos:
        # Unix zip tools keep st_mode in the high 16 bits; 0 there means "no unix mode recorded".
        file_type = stat.S_IFMT(info.external_attr >> 16)
        if file_type == stat.S_IFLNK:
            raise _refused(archive, info.filename, "it is a symlink")
        if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _refused(archive, info.filename, "it is not a regular file or directory")
        if info.flag_bits & 0x1:
            raise _refused(archive, info.filename, "it is encrypted")
        members.append(
            _checked_member(archive, info.filename, info.is_dir(), info.file_size, info, packed=info.compress_size)
        )
    return members


def _tar_members(archive: Path, tar: tarfile.TarFile, max_members: int) -> list[_Member]:
    members = []
    # Iterate lazily rather than getmembers(): an archive with millions of entries is refused
    # after reading max_members + 1 headers, not after loading them all.
    for index, info in enumerate(tar):
        if index >= max_members:
            raise _too_many_members(archive, info.name, max_members)
        if info.issym():
            raise _refused(archive, info.name, f"it is a symlink (to {info.linkname!r})")
        if info.islnk():
            raise _refused(archive, info.name, f"it is a hard link (to {info.linkname!r})")
        if info.ischr() or info.isblk() or info.isfifo():
            raise _refused(archive, info.name, "it is a device file or fifo")
        if not (info.isreg() or info.isdir()):
            raise _refused(archive, info.name, f"unsupported tar member type {info.type!r}")
        members.append(_checked_member(archive, info.name, info.isdir(), info.size, info, packed=None))
    return members


def _checked_member(
    archive: Path, name: str, is_dir: bool, declared_size: int, handle: Any, *, packed: int | None
) -> _Member:
    path = _safe_relative_path(archive, name)
    if is_dir:
        return _Member(name, path, True, 0, 0, None, handle)
    if not path:
        raise _refused(archive, name, "a file member needs a non-empty path")
    return _Member(name, path, False, declared_size, packed, _file_ignore_reason(path), handle)


def _file_ignore_reason(path: str) -> str | None:
    """Why a file member (its NFC posix path) is left out: file_names.ignore_reason, or a name that is not UTF-8."""
    return ignore_reason(path) or ("not_utf8" if _undecodable(path.split("/")[-1]) else None)


def _undecodable(name: str) -> bool:
    """A name read from a tar or a folder whose bytes are not UTF-8 holds lone surrogates (Python's surrogateescape):
    it cannot be written to a UTF-8 list or printed."""
    return any("\ud800" <= char <= "\udfff" for char in name)


def _components(archive: Path, name: str) -> list[str]:
    """The member's path components as stored, or ArchiveError if the path could escape the destination."""
    # Windows tools sometimes store backslashes; treat them as separators so '..\\x' cannot slip through.
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _WINDOWS_DRIVE.match(unified):
        raise _refused(archive, name, "absolute path")
    parts = [part for part in unified.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refused(archive, name, "'..' in its path would escape the destination")
    return parts


def _safe_relative_path(archive: Path, name: str) -> str:
    """The member's path relative to dest ('' for the root itself), each name in Unicode NFC."""
    return "/".join(unicodedata.normalize("NFC", part) for part in _components(archive, name))


def _refuse_normalisation_clashes(archive: Path, members: list[_Member]) -> None:
    """Two spellings of one NFC name (a folder `café` in NFD beside one in NFC) would merge silently on disk."""
    spellings: dict[str, str] = {}
    for member in members:
        if member.ignore is not None:
            continue
        stored = _components(archive, member.name)
        for depth in range(1, len(stored) + 1):
            spelling = "/".join(stored[:depth])
            first = spellings.setdefault("/".join(member.path.split("/")[:depth]), spelling)
            if first != spelling:
                raise ArchiveError(  # ascii(): the two read alike, their code points differ
                    f"{archive}: {first!r} and {spelling!r} ({ascii(first)} and {ascii(spelling)}) are one name once "
                    "Unicode-normalised (NFC; macOS and Linux tools write accents differently): rename one of them "
                    "in the archive"
                )


def _name_max(folder: Path) -> int:
    """Bytes a file or folder name may have in `folder`'s file system (255 on ext4, APFS, NTFS)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _refuse_undecodable_folder_names(archive: Path, members: list[_Member]) -> None:
    """A folder name that is not UTF-8 is refused, like one too long: skipping its files would drop a class (a file
    skipped for its own name keeps its folder, so that folder is judged too)."""
    for member in members:
        folders = member.path.split("/") if member.is_dir else member.path.split("/")[:-1]
        if left_out_folder(tuple(folders)) is not None:
            continue
        for folder in folders:
            if _undecodable(folder):
                raise ArchiveError(
                    f"{archive}: member {ascii(member.name)}: its folder name {os.fsencode(folder)!r} is not UTF-8 "
                    "text; rename the folder (convmv -f latin1 -t utf8 converts a tree's names)"
                )


def _refuse_long_folder_names(archive: Path, members: list[_Member], name_max: int) -> None:
    """A folder name over the file system's limit is refused; skipping its files would drop a class silently."""
    for member in members:
        if member.ignore is not None:
            continue
        folders = member.path.split("/") if member.is_dir else member.path.split("/")[:-1]
        for folder in folders:
            if len(folder.encode()) > name_max:
                raise ArchiveError(
                    f"{archive}: member {member.name!r}: its folder name is {len(folder.encode())} bytes, over the "
                    f"{name_max} a name may have on this file system; shorten it in the archive"
                )


def _refused(archive: Path, member_name: str, why: str) -> ArchiveError:
    return ArchiveError(f"{archive}: refusing member {member_name!r}: {why}")


def _unreadable(what: str, exc: BaseException) -> ArchiveError:
    return ArchiveError(f"cannot read {what}: corrupt or truncated archive ({type(exc).__name__}: {exc})")


def _too_many_members(archive: Path, member_name: str, max_members: int) -> ArchiveError:
    return ArchiveError(
        f"{archive}: more than data.max_archive_members={max_members} members (stopped at {member_name!r})"
    )


def _check_declared(archive: Path, members: list[_Member], limits: _Limits) -> None:
    """Refuse up front what the archive's own records show: a total over the cap, a zip member over the ratio."""
    total = 0
    for member in members:
        if member.is_dir or member.ignore is not None:
            continue  # skipped members are never decompressed, so they cost nothing
        total += member.declared_size
        if total > limits.total_bytes:
            raise ArchiveError(
                f"{archive}: member {member.name!r} brings the declared uncompressed size to {total} bytes, "
                f"over data.max_archive_bytes={limits.total_bytes}"
            )
        if member.packed_size is not None:
            _check_ratio(f"member {member.name!r} of {archive}", member.declared_size, member.packed_size, limits)


def _check_ratio(where: str, unpacked: int, packed: int, limits: _Limits) -> None:
    if unpacked > limits.ratio * (packed + _RATIO_SLACK_BYTES):
        raise ArchiveError(
            f"{where} unpacks {packed} bytes into {unpacked} or more: a compression bomb, not an image (over "
            f"data.max_compression_ratio={limits.ratio:g} beyond its first {_RATIO_SLACK_BYTES >> 20} MiB; raise it "
            "only for an archive you trust)"
        )


def _extract_members(
    archive: Path,
    members: list[_Member],
    open_member: Callable[[Any], IO[bytes] | None],
    dest: Path,
    limits: _Limits,
    packed_position: Callable[[], int] | None,
) -> dict[str, list[str]]:
    """`packed_position`: the archive file's read position, for a tar; None for a zip (its records were judged)."""
    name_max = _name_max(dest.parent)
    _refuse_undecodable_folder_names(archive, members)
    members = [_without_long_file_name(member, name_max) for member in members]
    _refuse_long_folder_names(archive, members, name_max)
    _refuse_normalisation_clashes(archive, members)
    _check_declared(archive, members, limits)
    dest.mkdir(parents=True)
    try:
        return _write_members(archive, members, open_member, dest, limits, packed_position)
    except BaseException:
        # Also on KeyboardInterrupt: a partial tree must never look like a finished extraction.
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _without_long_file_name(member: _Member, name_max: int) -> _Member:
    if member.is_dir or member.ignore is not None or len(member.path.split("/")[-1].encode()) <= name_max:
        return member
    return replace(member, ignore="name_too_long")


def _write_members(
    archive: Path,
    members: list[_Member],
    open_member: Callable[[Any], IO[bytes] | None],
    dest: Path,
    limits: _Limits,
    packed_position: Callable[[], int] | None,
) -> dict[str, list[str]]:
    ignored: dict[str, list[str]] = {}
    written_total = 0
    for member in members:
        target = _target_inside(archive, dest, member)
        if member.is_dir:
            # Skipped folders (__MACOSX/, .git/) are not created: an empty __MACOSX/ next to the
            # dataset folder would break find_dataset_root's "single top-level folder" rule.
            if member.path and left_out_folder(PurePosixPath(member.path).parts) is None:
                _make_folder(archive, member, target)
            continue
        if member.ignore is not None:
            ignored.setdefault(member.ignore, []).append(member.path)
            folder = PurePosixPath(member.path).parent
            if folder.parts and ignore_reason(folder.as_posix()) is None:  # its folder is kept: see the docstring
                _make_folder(archive, member, target.parent)
            continue
        budget = _Limits(limits.total_bytes - written_total, limits.ratio)
        written_total += _write_file(archive, member, open_member, target, budget, packed_position)
    return ignored


def _target_inside(archive: Path, dest: Path, member: _Member) -> Path:
    """dest / member.path, re-checked after resolution (belt and braces over _safe_relative_path)."""
    target = dest / member.path
    if not target.resolve().is_relative_to(dest.resolve()):
        raise _refused(archive, member.name, f"it resolves outside {dest}")
    return target


def _make_folder(archive: Path, member: _Member, target: Path) -> None:
    try:
        target.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ArchiveError(f"{archive}: member {member.name!r} clashes with a file of the same path") from exc


def _write_file(
    archive: Path,
    member: _Member,
    open_member: Callable[[Any], IO[bytes] | None],
    target: Path,
    budget: _Limits,
    packed_position: Callable[[], int] | None,
) -> int:
    """Write one member to `target` and return the bytes actually written."""
    where = f"member {member.name!r} of {archive}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x": a second member with the same path is an error, not a silent overwrite.
        with open(target, "xb") as out:
            source = open_member(member.handle)
            if source is None:
                raise ArchiveError(f"cannot read {where}: it has no data")
            packed_read = None if packed_position is None else _packed_counter(packed_position)
            with source:
                written = _copy_capped(
                    source, out, declared_size=member.declared_size, budget=budget, packed_read=packed_read, where=where
                )
    except (FileExistsError, NotADirectoryError) as exc:
        clash = f"{archive}: member {member.name!r} clashes with another member at {member.path}"
        raise ArchiveError(clash) from exc
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        raise ArchiveError(f"{archive}: member {member.name!r}: its path is too long for this file system") from None
    except _CORRUPT_ARCHIVE_ERRORS as exc:
        raise _unreadable(where, exc) from exc
    # Archive permissions are not trusted (setuid, world-writable, 0o000): images are plain files.
    os.chmod(target, _EXTRACTED_FILE_MODE)
    return written


def _packed_counter(position: Callable[[], int]) -> Callable[[], int]:
    """Packed bytes read since now, by the archive file's position. Listing the members left the file at its end,
    so the first member's read rewinds it: then everything since the archive's start counts (its headers too)."""
    start = position()

    def packed_read() -> int:
        nonlocal start
        now = position()
        if now < start:
            start = 0
        return now - start

    return packed_read


def _copy_capped(
    source: IO[bytes],
    out: IO[bytes],
    *,
    declared_size: int,
    budget: _Limits,
    packed_read: Callable[[], int] | None,
    where: str,
) -> int:
    """Copy in chunks, refusing as soon as the member yields more than it declared, than the bytes left under
    max_total_bytes, or (a tar member: `packed_read` counts the packed bytes read for it) more than the ratio.

    zipfile and tarfile already stop at the declared size, so this is the last line of defence
    against a member that lies about its size. Each chunk is checked before it is written, so
    nothing beyond any limit ever reaches the disk.
    """
    written = 0
    while chunk := source.read(_COPY_CHUNK_BYTES):
        written += len(chunk)
        if written > declared_size:
            raise ArchiveError(f"{where} yields more than its declared {declared_size} bytes (zip bomb?)")
        if written > budget.total_bytes:
            raise ArchiveError(f"{where} takes the extracted size over data.max_archive_bytes")
        if packed_read is not None:
            _check_ratio(where, written, packed_read(), budget)
        out.write(chunk)
    return written
