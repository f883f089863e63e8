"""The stages' command line: a user error is one line and exit 1; outputs that cannot be written are found before a
stage starts; --help answers at once and names the stage as it is run."""

from __future__ import annotations

import ast
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages import split
from stages.lib import cli
from stages.lib.errors import PipelineError
from tests.conftest import ROOT, build_encoded_project, set_params


def test_a_pipeline_error_exits_1_with_one_error_line():
    def main():
        raise PipelineError("params.yaml: seed: must be at least 0")

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
    with pytest.raises(PipelineError) as raised:
        cli.writable(tmp_path / "metrics" / "data.json")
    assert str(raised.value) == (
        f"{tmp_path / 'metrics' / 'data.json'}: cannot be written: {tmp_path / 'metrics'} is a file, not a folder; "
        "nothing was written"
    )
    cli.writable(tmp_path / "new" / "folders" / "m.json")  # folders still to be made: the nearest existing one counts
    assert not (tmp_path / "new").exists()


def test_a_stage_s_help_names_it_as_it_is_run():
    done = subprocess.run([sys.executable, "-m", "stages.split", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m stages.split [-h]")


def test_no_module_imports_the_command_line_for_its_errors():
    """cli.py is the parser and `run`; the errors every module raises are errors.py's, the state that the code writing
    outputs shares with `run` is lifecycle.py's. So the library imports no cli.py, and whatever imports it takes a
    name cli.py itself defines (none that it only imports: PipelineError is errors.py's)."""
    defined = {
        node.name
        for node in ast.parse((ROOT / "stages" / "lib" / "cli.py").read_text()).body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }
    importers = {}
    for path in [
        *(ROOT / "stages").rglob("*.py"),
        *(ROOT / "scripts").glob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "stages.lib.cli":
                importers[path.relative_to(ROOT).as_posix()] = {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module == "stages.lib":
                assert "cli" not in {alias.name for alias in node.names}, f"{path}: import the names it uses"
    assert importers and not [path for path in importers if path.startswith("stages/lib/")]
    assert {path: names - defined for path, names in importers.items() if names - defined} == {}
