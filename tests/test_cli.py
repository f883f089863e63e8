"""The stages' command line: a user error is one line and exit 1; missing and unusable inputs name their stage;
outputs that cannot be written are found before a stage starts; Ctrl-C and SIGTERM end it at once with one line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stages import split
from stages.lib import cli
from tests.conftest import ROOT, build_encoded_project, set_params


def test_a_pipeline_error_exits_1_with_one_error_line():
    def main():
        raise cli.PipelineError("params.yaml: seed: must be at least 0")

    with pytest.raises(SystemExit) as exit_:
        cli.run(main)
    assert exit_.value.code == "error: params.yaml: seed: must be at least 0"  # sys.exit(str) prints it, status 1


def test_other_exceptions_are_not_hidden():
    def main():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        cli.run(main)


def test_a_full_disk_anywhere_is_one_error_line():
    def main():
        raise OSError(28, "No space left on device")  # e.g. a Keras checkpoint, written outside stages.lib.files

    with pytest.raises(SystemExit) as exit_:
        cli.run(main)
    assert exit_.value.code == (
        "error: no space left on the device ([Errno 28] No space left on device); free some space and re-run the stage"
    )


def test_require_names_the_stage_that_writes_the_input(tmp_path: Path):
    assert cli.require(tmp_path, "encode") == tmp_path
    with pytest.raises(cli.MissingInput) as err:
        cli.require(tmp_path / "meta.json", "encode")
    assert str(err.value) == f"{tmp_path / 'meta.json'}: missing; run the encode stage first (dvc repro encode)"
    problem = cli.rerun(tmp_path / "m.keras", "finetune", "cannot be loaded")
    assert str(problem) == f"{tmp_path / 'm.keras'}: cannot be loaded; re-run the finetune stage (dvc repro finetune)"


def test_first_line_of_any_exception():
    assert cli.first_line(ValueError("one\ntwo")) == "one"
    assert cli.first_line(ValueError()) == "ValueError"


def test_stage_parser_takes_params_and_the_docstring():
    parser = cli.stage_parser("the stage's recipe")
    assert parser.description == "the stage's recipe"
    assert parser.parse_args([]).params == Path("params.yaml")


@pytest.mark.parametrize(
    "stage", ["download", "split", "encode", "baseline", "transfer", "finetune", "evaluate", "export", "report"]
)
def test_help_answers_without_importing_tensorflow(stage: str):
    """--help (and a bad argument) need the parser only: no stage loads TensorFlow (4-5 s) to print its usage."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['stages.{stage}', '--help']\n"
        "try:\n"
        f"    runpy.run_module('stages.{stage}', run_name='__main__')\n"
        "except SystemExit as exit_:\n"
        "    assert exit_.code == 0, exit_.code\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and done.stdout.split()[-2:] == ["False", "False"]


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` unwritable while the block runs: its mode 0555, and, for root (whom modes do not stop), immutable."""
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        if os.access(folder, os.W_OK):
            pytest.skip(f"{folder} cannot be made read-only here")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_a_stage_run_by_hand_with_an_unwritable_output_replaces_none_of_its_outputs(tmp_path: Path):
    # As the multi-worker recipe runs a stage's command by hand: data/splits is writable, metrics/ is not.
    root = build_encoded_project(tmp_path / "p")
    set_params(root, split={"test_fraction": 0.3})  # the stage would write other lists now
    splits = {path: path.read_bytes() for path in (root / "data" / "splits").iterdir()}
    argv = ["--params", str(root / "params.yaml"), "--raw", str(root / "data" / "raw")]
    argv += ["--corrections", str(ROOT / "corrections.csv")]
    argv += ["--out", str(root / "data" / "splits"), "--metrics", str(root / "metrics" / "data.json")]
    argv += ["--details", str(root / "metrics" / "split.json")]
    with read_only(root / "metrics"), pytest.raises(SystemExit) as exit_:
        cli.run(lambda: split.main(argv))
    assert exit_.value.code == (
        f"error: {root / 'metrics' / 'data.json'}: cannot be written: {root / 'metrics'} is not writable; make it "
        "writable and run the stage again (nothing was written)"
    )
    assert {path: path.read_bytes() for path in (root / "data" / "splits").iterdir()} == splits


def test_an_output_below_a_file_is_one_line(tmp_path: Path):
    (tmp_path / "metrics").write_text("not a folder")
    with pytest.raises(cli.PipelineError) as raised:
        cli.writable(tmp_path / "metrics" / "data.json")
    assert str(raised.value) == (
        f"{tmp_path / 'metrics' / 'data.json'}: cannot be written: {tmp_path / 'metrics'} is a file, not a folder; "
        "nothing was written"
    )
    cli.writable(tmp_path / "new" / "folders" / "m.json")  # folders still to be made: the nearest existing one counts
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_ends_the_stage_at_once_with_one_line_wherever_its_main_thread_is(signum: int, name: str):
    # The main thread blocks in a system call, as in TensorFlow's waits, so Python's own handling never comes.
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from stages.lib import cli

        def main():
            cli.when_interrupted(" in epoch 3 of 10", "run the stage again to resume from its checkpoint of epoch 2")
            never_written, _ = os.pipe()
            print("blocked", flush=True)
            os.read(never_written, 1)

        cli.run(main)
        """
    )
    stage = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert stage.stdout.readline() == "blocked\n"
    sent = time.monotonic()
    stage.send_signal(signum)
    _, stderr = stage.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert stage.returncode == 128 + signum
    assert stderr == (
        f"error: interrupted ({name}) in epoch 3 of 10; run the stage again to resume from its checkpoint of epoch 2\n"
    )


def test_run_gives_the_signals_back_when_the_stage_ends():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    cli.run(lambda: None)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert signal.set_wakeup_fd(-1) == -1  # none left set


def test_a_stage_s_help_names_it_as_it_is_run():
    done = subprocess.run([sys.executable, "-m", "stages.split", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m stages.split [-h]")
