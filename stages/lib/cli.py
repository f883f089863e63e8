"""What every stage's command line shares: its parser, user errors as one line on stderr and exit code 1, the two
messages a stage gives about its inputs (missing; unreadable), which name the stage that writes them, and how a
stage run ends, whatever happens, without replacing an output with a wrong one:
- the paths a stage writes (its parser's `add_output`) must be writable before it starts: a read-only folder is one
  line, not a traceback after another output was already replaced;
- `run` holds the checks every output must pass before it is renamed into place (stages.lib.files and saving call
  `before_replacing`): stage_params.for_stage adds one, that the params the stage declares are those it read;
- Ctrl-C (SIGINT) and SIGTERM end a stage at once with one line, wherever its main thread is (`ending_on_signals`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
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
        from stages.lib import files  # (files imports this module)

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


_checks_before_replacing: list[Callable[[], None]] | None = None  # while `run` runs a stage


def check_before_replacing(check: Callable[[], None]) -> None:
    """Have every output the running stage writes pass `check` (raising a PipelineError) before it replaces the old
    one; outside `run` (a test calling a stage's main), nothing is checked."""
    if _checks_before_replacing is not None:
        _checks_before_replacing.append(check)


def before_replacing() -> None:
    """Called by whatever renames an output into place (stages.lib.files, saving), right before it does."""
    for check in _checks_before_replacing or ():
        check()


RUN_AGAIN = "run the stage again"
_interrupted = ["", RUN_AGAIN]  # where the stage was, and what to do: the line a signal ends it with
_whole = threading.Lock()  # held while files that go together are written (a checkpoint's model and state)


def when_interrupted(where: str = "", then: str = RUN_AGAIN) -> None:
    """What the line says if Ctrl-C or SIGTERM ends the stage from now on: `interrupted (SIGINT){where}; {then}`."""
    _interrupted[:] = [where, then]


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A signal that arrives while the block runs ends the stage only once the block is done."""
    with _whole:
        yield


def end_now(line: str, code: int) -> None:
    """Print `line` on stderr and end the process at once, from any thread, whatever the main thread is doing."""
    with contextlib.suppress(Exception):
        if sys.stdout.isatty():
            sys.stdout.write("\n")  # after Keras' progress bar
        sys.stdout.flush()
    os.write(2, f"{line}\n".encode())
    os._exit(code)


def _end_on_signal(wakeup: int) -> None:
    while received := os.read(wakeup, 1):
        signum = received[0]
        if signum in (signal.SIGINT, signal.SIGTERM):
            _whole.acquire(timeout=30)  # let a checkpoint being written finish, so a re-run resumes from it
            where, then = _interrupted
            end_now(f"error: interrupted ({signal.Signals(signum).name}){where}; {then}", 128 + signum)


@contextlib.contextmanager
def ending_on_signals() -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM end the stage at once, with one line (`when_interrupted`) and exit status
    128 + the signal's number. Python runs its signal handlers in the main thread only, between bytecodes, which
    never comes while TensorFlow blocks it (waiting for other workers, in a collective): a thread that Python's
    own C-level handler wakes, through the signal wakeup fd, ends the process instead. Ending at once loses
    nothing: outputs are renamed into place whole (stages.lib.files), and a checkpoint is written `uninterrupted`."""
    wakeup, woken = os.pipe()
    os.set_blocking(woken, False)
    handlers = {signum: signal.signal(signum, lambda *_: None) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous = signal.set_wakeup_fd(woken, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_end_on_signal, args=(wakeup,), name="ends-on-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        os.close(woken)  # the watcher reads the end of the pipe and returns
        watcher.join()
        os.close(wakeup)
        when_interrupted()


def run(main: Callable[[], object]) -> None:
    """Run a stage's `main` as its command: user errors as one line and exit status 1, signals as `ending_on_signals`
    says, and its outputs replaced only after the checks `check_before_replacing` adds."""
    global _checks_before_replacing
    _checks_before_replacing = []
    try:
        with ending_on_signals():
            main()
    except PipelineError as exc:
        sys.exit(f"error: {exc}")
    except Exception as exc:
        # Outputs written through stages.lib.files name themselves; this catches the rest (checkpoints, logs).
        if out_of_space(exc):
            sys.exit(f"error: no space left on the device ({first_line(exc)}); free some space and re-run the stage")
        raise
    finally:
        _checks_before_replacing = None
