"""The stages' command line: a user error is one line and exit 1; missing and unusable inputs name their stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.lib import cli


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
