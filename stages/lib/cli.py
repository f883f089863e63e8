"""What every stage's command line shares: its parser, user errors as one line on stderr and exit code 1, and the
two messages a stage gives about its inputs (missing; unreadable), which name the stage that writes them."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable
from pathlib import Path

PARAMS_FILE = Path("params.yaml")


class PipelineError(Exception):
    """An error the user can fix (bad params, bad data, no network): one line, no traceback."""


class MissingInput(PipelineError, FileNotFoundError):
    """An input another stage writes is not there."""


def require(path: Path, stage: str) -> Path:
    """`path`, if it exists; else the error that says which stage writes it."""
    if not Path(path).exists():
        raise MissingInput(f"{path}: missing; run the {stage} stage first (dvc repro {stage})")
    return Path(path)


def rerun(path: Path, stage: str, problem: str) -> PipelineError:
    """The error for an input that is there but unusable (corrupt, from another version): re-run its stage."""
    return PipelineError(f"{path}: {problem}; re-run the {stage} stage (dvc repro {stage})")


def out_of_space(exc: BaseException) -> bool:
    """The disk (or quota) is full: Python's OSError, or TensorFlow's ResourceExhaustedError (it has only the text)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


def first_line(exc: BaseException) -> str:
    """An exception in one line: the first line of its message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """A stage's parser: its docstring as help, and --params. The stage adds its paths, as dvc.yaml passes them."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help=f"default {PARAMS_FILE}")
    return parser


def training_parser(doc: str | None) -> argparse.ArgumentParser:
    """stage_parser with the paths every training stage takes."""
    parser = stage_parser(doc)
    for name, what in (
        ("--records", "data/tfrecords: the encoded splits"),
        ("--model", "the model to write (.keras)"),
        ("--logs", "the dvclive folder"),
        ("--metrics", "the training record JSON to write"),
        ("--val-metrics", "the headline JSON to write: the model's val accuracy"),
        ("--checkpoints", "where epoch checkpoints are kept until training completes"),
    ):
        parser.add_argument(name, type=Path, required=True, help=what)
    return parser


def run(main: Callable[[], object]) -> None:
    try:
        main()
    except PipelineError as exc:
        sys.exit(f"error: {exc}")
    except Exception as exc:
        # Outputs written through stages.lib.files name themselves; this catches the rest (checkpoints, logs).
        if out_of_space(exc):
            sys.exit(f"error: no space left on the device ({first_line(exc)}); free some space and re-run the stage")
        raise
