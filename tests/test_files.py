"""Files written atomically (nothing half-written, normal permissions) and hashed."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stages.lib import files
from stages.lib.errors import PipelineError
from tests.conftest import ROOT


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_json_is_sorted_with_a_trailing_newline(tmp_path: Path):
    files.write_json(tmp_path / "a" / "m.json", {"b": 1, "a": 2})
    assert (tmp_path / "a" / "m.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_written_files_and_folders_get_the_umask_not_mkstemps_0600(tmp_path: Path):
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "t.txt", "x")
        with files.replace_dir(tmp_path / "out") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(old)
    assert mode(tmp_path / "t.txt") == 0o644 and mode(tmp_path / "out") == 0o755


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "m.json"
    files.write_text(target, "old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(PipelineError) as caught:
        files.write_text(target, "new")
    assert str(caught.value).startswith(f"{target}: no space left on the device to write it (")
    assert str(caught.value).endswith(" MB free); free some space and re-run the stage (nothing was replaced)")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.mark.parametrize(
    "full_disk",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        RuntimeError("/x/train-00000-of-00001.tfrecord; No space left on device"),  # how TensorFlow says it
    ],
)
def test_a_full_disk_while_a_folder_is_written_names_the_folder_and_keeps_the_old_one(tmp_path: Path, full_disk):
    out = tmp_path / "out"
    with files.replace_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(PipelineError, match=f"^{out}: no space left on the device to write it"):
        with files.replace_dir(out) as tmp:
            raise full_disk
    assert sorted(p.name for p in out.iterdir()) == ["a"] and sorted(tmp_path.iterdir()) == [out]


def test_other_os_errors_are_not_taken_for_a_full_disk(tmp_path: Path):
    with pytest.raises(PermissionError):
        with files.replace_dir(tmp_path / "out"):
            raise PermissionError(errno.EACCES, "Permission denied")


def test_replace_dir_swaps_in_whole_or_not_at_all(tmp_path: Path):
    out = tmp_path / "out"
    with files.replace_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with files.replace_dir(out) as tmp:
            (tmp / "b").write_text("2")
            raise RuntimeError("the stage failed")
    assert sorted(p.name for p in out.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or .old folder left


def test_sha256_file_reads_in_chunks(tmp_path: Path):
    data = os.urandom(3000)
    (tmp_path / "f").write_bytes(data)
    assert files.sha256_file(tmp_path / "f", chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


def test_a_later_write_removes_what_a_killed_earlier_one_left(tmp_path: Path):
    """kill -9 during replace_dir or write_bytes leaves .<name>.<random>.tmp beside the output; the next write of
    the same output removes it, and leaves other outputs' temporaries alone."""
    stale_dir = tmp_path / ".tfrecords.x1y2.tmp"
    stale_dir.mkdir()
    (stale_dir / "train-00000-of-00001.tfrecord").write_bytes(b"half")
    (tmp_path / ".data.json.a1b2.tmp").write_text("{")
    other = tmp_path / ".raw.zz.tmp"
    other.mkdir()
    with files.replace_dir(tmp_path / "tfrecords") as tmp:
        (tmp / "meta.json").write_text("{}")
    files.write_text(tmp_path / "data.json", "{}")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".raw.zz.tmp", "data.json", "tfrecords"]


WRITER = """if True:
    import sys, time
    from pathlib import Path
    from stages.lib import files
    with files.replace_dir(Path(sys.argv[1])) as tmp:
        (tmp / "train-00000-of-00002.tfrecord").write_bytes(b"half")
        print(tmp, flush=True)
        time.sleep(600)  # killed here, as encode by kill -9 in the middle of its shards
"""


def start_writer(out: Path) -> tuple[subprocess.Popen, Path]:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return writer, Path(writer.stdout.readline().strip())


def test_a_stage_that_starts_removes_what_a_killed_write_of_any_of_its_paths_left(tmp_path: Path):
    """Seen in issue 33: after a kill -9 in encode and a restore from DVC's run cache (which runs no stage code), a
    partial data/.tfrecords.*.tmp stayed. The next stage given data/tfrecords, to read it, removes it when it starts;
    a temporary whose writer still runs is left alone."""
    from stages.lib.cli import stage_parser

    records, raw = tmp_path / "data" / "tfrecords", tmp_path / "data" / "raw"
    killed, partial = start_writer(records)
    running, in_flight = start_writer(raw)
    try:
        killed.kill()  # SIGKILL: no Python cleanup runs
        killed.wait()
        assert partial.is_dir() and partial.name.startswith(f".tfrecords.{killed.pid}-")
        saved = tmp_path / "models" / f".transfer.tmp{killed.pid}.keras"  # saving.py's, by a killed save
        saved.parent.mkdir()
        saved.write_bytes(b"half")
        parser = stage_parser("a stage that reads the records and a model and writes a model")
        parser.add_argument("--records", type=Path)
        parser.add_argument("--raw", type=Path)
        parser.add_output("--model", "the model")
        parser.parse_args(
            ["--records", str(records), "--raw", str(raw), "--model", str(tmp_path / "models" / "transfer.keras")]
        )
        assert not partial.exists() and not saved.exists()
        assert in_flight.is_dir()  # its writer still runs: not ours to remove
    finally:
        running.kill()
        running.wait()
