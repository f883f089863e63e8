"""How a running stage ends, whatever happens, without replacing an output with a wrong one: the process's state that
the code writing outputs shares with the command running it (cli.run, inside `running`).

- Checks every output must pass before it is renamed into place (`check_before_replacing`; stages.lib.files and
  saving call `before_replacing`): stage_params.for_stage adds one, that the params the stage declares are those it
  read.
- Ctrl-C (SIGINT) and SIGTERM end a stage at once with one line, wherever its main thread is (`ending_on_signals`);
  what the line says is set as the stage goes (`when_interrupted`), and files that go together are written whole
  (`uninterrupted`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

_checks_before_replacing: list[Callable[[], None]] | None = None  # while `running`


def check_before_replacing(check: Callable[[], None]) -> None:
    """Have every output the running stage writes pass `check` (raising a PipelineError) before it replaces the old
    one; outside `running` (a test calling a stage's main), nothing is checked."""
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


@contextlib.contextmanager
def running() -> Iterator[None]:
    """A stage runs as a command: signals end it as `ending_on_signals` says, and its outputs replace the old ones
    only after the checks `check_before_replacing` adds."""
    global _checks_before_replacing
    _checks_before_replacing = []
    try:
        with ending_on_signals():
            yield
    finally:
        _checks_before_replacing = None
