"""How a running stage ends: Ctrl-C and SIGTERM end it at once with one line, wherever its main thread is, and the
process's signal handling is given back afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from stages.lib import lifecycle
from tests.conftest import ROOT


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_ends_the_stage_at_once_with_one_line_wherever_its_main_thread_is(signum: int, name: str):
    # The main thread blocks in a system call, as in TensorFlow's waits, so Python's own handling never comes.
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from stages.lib import lifecycle

        def main():
            then = "run the stage again to resume from its checkpoint of epoch 2"
            lifecycle.when_interrupted(" in epoch 3 of 10", then)
            never_written, _ = os.pipe()
            print("blocked", flush=True)
            os.read(never_written, 1)

        with lifecycle.running():
            main()
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


def test_running_gives_the_signals_back_when_the_stage_ends():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with lifecycle.running():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert signal.set_wakeup_fd(-1) == -1  # none left set
