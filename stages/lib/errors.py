"""The errors a user can fix, said in one line: the vocabulary every module raises them in, apart from the command
line that prints them (cli.run: `error: <line>` on stderr, exit status 1).

An input another stage writes is missing (`require`) or there but unusable (`rerun`): either way the line names the
stage that writes it and the `dvc repro` that fixes it. What is not an error but should be read is a warning (`warn`),
one line on the same stream, stderr, in one form: `<stage>: warning: <text>`.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path


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


def warn(stage: str, text: str) -> None:
    """A warning: the stage goes on, but the user should know. One line, `<stage>: warning: <text>`, on stderr, the
    stream errors take too, apart from the stage's results on stdout (which a user may pipe or parse)."""
    _tell(stage, "warning", text)


def note(stage: str, text: str) -> None:
    """What the user should know about a result that may come (`<stage>: note: <text>`), as `warn` says it."""
    _tell(stage, "note", text)


def _tell(stage: str, kind: str, text: str) -> None:
    print(f"{stage}: {kind}: {text}", file=sys.stderr, flush=True)
