"""The stages' command line: a user error is one line and exit 1; missing and unusable inputs name their stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stages.lib import cli
from tests.conftest import ROOT


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
