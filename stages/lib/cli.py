"""What every stage's command line shares: its parser, and how it runs. The paths a stage writes (its parser's
`add_output`) must be writable before it starts: a read-only folder is one line, not a traceback after another output
was already replaced. `run` runs the stage's main as a command (lifecycle.running: signals, checks before an output is
replaced) and ends a user error (errors.PipelineError) as one line on stderr, exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from stages.lib import files, lifecycle
from stages.lib.errors import PipelineError, first_line, out_of_space
from stages.lib.params_file import PARAMS_FILE


class StageParser(argparse.ArgumentParser):
    """A stage's parser. The paths it writes are added with `add_output`; once parsed, each must be writable, and
    what killed writes left beside any of its paths is removed (files.remove_stale_beside)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outputs: list[str] = []  # dests of the paths the stage writes: its DVC outputs and its scratch

    def add_output(self, flag: str, help: str) -> None:
        self.outputs.append(self.add_argument(flag, type=Path, required=True, help=help).dest)

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        for dest in self.outputs:
            writable(getattr(parsed, dest))
        files.remove_stale_beside(_paths(parsed))
        return parsed


def _paths(parsed: argparse.Namespace) -> list[Path]:
    """Every path a stage was given to read or write (not --params: the user's file, never written by a stage)."""
    values = [value for dest, value in vars(parsed).items() if dest != "params"]
    return [
        item for value in values for item in (value if isinstance(value, list) else [value]) if isinstance(item, Path)
    ]


def writable(path: Path) -> None:
    """Refuse `path` unless the stage can write it: its nearest existing folder (which it creates the rest in), and
    the path itself when it is a folder already (dvclive logs and checkpoints are written into theirs), must be
    writable. Checked when the stage starts, so nothing is replaced, and no training is lost, before the stage
    finds out."""
    path = Path(path)
    folder = next(p for p in (path.parent.absolute(), *path.parent.absolute().parents) if p.exists())
    for place in (folder, path) if path.is_dir() else (folder,):
        if not place.is_dir():
            raise PipelineError(f"{path}: cannot be written: {place} is a file, not a folder; nothing was written")
        if not os.access(place, os.W_OK | os.X_OK):
            raise PipelineError(
                f"{path}: cannot be written: {place} is not writable; make it writable and run the stage again "
                "(nothing was written)"
            )


def stage_parser(doc: str | None) -> StageParser:
    """A stage's parser: its docstring as help, and --params. The stage adds its paths, as dvc.yaml passes them."""
    parser = StageParser(prog=_command(), description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help=f"default {PARAMS_FILE}")
    return parser


def _command() -> str | None:
    """`python -m stages.<name>`, as the stage is run (argparse would say `<name>.py`); None outside `-m`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return f"python -m {spec.name}" if spec is not None and spec.name.startswith("stages.") else None


def training_parser(doc: str | None) -> StageParser:
    """stage_parser with the paths every training stage takes."""
    parser = stage_parser(doc)
    parser.add_argument("--records", type=Path, required=True, help="data/tfrecords: the encoded splits")
    for name, what in (
        ("--model", "the model to write (.keras)"),
        ("--logs", "the dvclive folder"),
        ("--metrics", "the training record JSON to write"),
        ("--val-metrics", "the headline JSON to write: the model's val accuracy"),
        ("--checkpoints", "where epoch checkpoints are kept until training completes"),
    ):
        parser.add_output(name, what)
    return parser


def run(main: Callable[[], object]) -> None:
    """Run a stage's `main` as its command: user errors as one line and exit status 1, inside lifecycle.running
    (signals, and the checks before an output replaces the old one)."""
    try:
        with lifecycle.running():
            main()
    except PipelineError as exc:
        sys.exit(f"error: {exc}")
    except Exception as exc:
        # Outputs written through stages.lib.files name themselves; this catches the rest (checkpoints, logs).
        if out_of_space(exc):
            sys.exit(f"error: no space left on the device ({first_line(exc)}); free some space and re-run the stage")
        raise
