"""Files: written so that a failed stage leaves nothing that looks valid, hashed, and a stage's JSON read back.

Files are written to a temporary name beside the target and renamed into place; a directory output is
built in a temporary sibling directory and swapped in only when the stage has finished it. Both get the
permissions of a normally created file or folder (the umask applied), not mkstemp's private 0600 / 0700.
Before anything is renamed into place, the running stage's checks pass (lifecycle.before_replacing: its params are
still those it read).

A temporary carries the id of the process writing it (`.<name>.<pid>-<random>.tmp`; saving.py's
`.<stem>.tmp<pid>.keras`). One left by a killed write is removed by the next write of its output, and when any stage
starts, beside every path it reads or writes (`remove_stale_beside`, called by cli.StageParser): a stage DVC
restores from its run cache never runs, so the next stage to touch its output cleans up after it. A temporary
whose process still runs is never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.lib import lifecycle
from stages.lib.errors import PipelineError, out_of_space, require, rerun


@contextlib.contextmanager
def naming_a_full_disk(path: Path) -> Iterator[None]:
    """Running out of disk space while writing `path` becomes one error line that names it and says what to do."""
    try:
        yield
    except Exception as exc:
        if not out_of_space(exc):
            raise
        free = shutil.disk_usage(next(p for p in Path(path).absolute().parents if p.exists())).free
        raise PipelineError(
            f"{path}: no space left on the device to write it ({free / 1e6:.1f} MB free); free some space and "
            "re-run the stage (nothing was replaced)"
        ) from None


TEMPORARIES = (".{name}.*.tmp", ".{stem}.tmp*{suffix}")  # this module's, and saving.py's (Keras needs the suffix)
# The writer's process id in a temporary's name: `.tfrecords.123-k2x9.tmp`, `.baseline.tmp123.keras`.
_WRITER = re.compile(r"\.(?:tmp)?(\d+)(?:-\w*)?\.\w+$")


def _writer_is_running(temporary: Path) -> bool:
    """Whether the process that named `temporary` still runs (False for a name without one: an older version's)."""
    found = _WRITER.search(temporary.name)
    if found is None:
        return False
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number no process has): not ours to judge
    return True


def remove_stale(path: Path, pattern: str = TEMPORARIES[0]) -> None:
    """Delete what a killed earlier write of `path` left beside it (its temporary files or folders, named by
    `pattern`), unless the process that wrote one still runs."""
    path = Path(path)
    for stale in path.parent.glob(pattern.format(name=path.name, stem=path.stem, suffix=path.suffix)):
        if _writer_is_running(stale):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def remove_stale_beside(paths: list[Path]) -> None:
    """remove_stale for every path a stage reads or writes, when it starts (see the module docstring)."""
    for path in paths:
        if Path(path).parent.is_dir():
            for pattern in TEMPORARIES:
                remove_stale(path, pattern)


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with naming_a_full_disk(path), os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        lifecycle.before_replacing()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Sorted keys and a trailing newline, so identical data gives identical bytes and clean diffs."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def replace_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces `path`, on error it is deleted.

    The old `path` is moved aside before the new one is renamed in, so at every moment `path` is either
    the old complete output, absent, or the new complete output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; an output folder gets the usual permissions
    try:
        with naming_a_full_disk(path):
            yield tmp
        lifecycle.before_replacing()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    with lifecycle.uninterrupted():  # not left absent by a signal between the two renames
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large archives do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Metrics:
    """A flat JSON file with the stage that writes it, so a missing key names both."""

    path: Path
    stage: str
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise rerun(self.path, self.stage, f"no {key!r}") from None


def read_metrics(path: Path, stage: str) -> Metrics:
    try:
        values = json.loads(require(path, stage).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise rerun(path, stage, f"not valid JSON ({exc})") from None
    return Metrics(Path(path), stage, values)
