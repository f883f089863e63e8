"""Seconds of a `dvc repro` (and `dvc status`) that has nothing to do: the price of asking "is anything stale?".

    python -m benchmarks.dvc_noop [--workspace demo] [--repeats 5]

With --workspace, times an existing, complete run (after `make demo`: demo/). Without it, first runs
scripts/demo.sh at tiny sizes into a temporary folder (about 1.5 minutes). Prints every run's wall time and
the median; goal: a no-op `dvc repro` under 3 s. The first timed call may be slower (cold file cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import recorded

ROOT = Path(__file__).resolve().parents[1]
TINY_DEMO = [
    "data.sample_train_per_class=12",
    "data.sample_validation_per_class=10",
    "encode.image_size=32",
    "baseline.image_size=32",
    "baseline.epochs=1",
    "model.image_size=32",
    "transfer.epochs=1",
    "finetune.epochs=1",
]
GOAL_SECONDS = 3.0


def venv_env() -> dict[str, str]:
    """This interpreter's bin/ first on PATH, so dvc and the stages run from the same venv."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=venv_env(), capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout + done.stderr


def build_tiny_demo(folder: Path) -> Path:
    workspace = folder / "demo"
    overrides = [arg for value in TINY_DEMO for arg in ("-S", value)]
    start = time.perf_counter()
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), str(workspace), *overrides],
        cwd=ROOT,
        env=venv_env(),
        check=True,
        capture_output=True,
    )
    print(f"tiny demo run (every stage through dvc) in {time.perf_counter() - start:.0f} s: {workspace}")
    return workspace


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, help="a complete run to time (default: a tiny one, made first)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workspace = args.workspace.resolve() if args.workspace else build_tiny_demo(Path(tmp))
        files = sum(1 for _ in (workspace / "data").rglob("*") if _.is_file())
        print(f"workspace {workspace}: {files} files under data/")
        for command in (["dvc", "repro"], ["dvc", "status"]):
            seconds = []
            for _ in range(args.repeats):
                elapsed, out = timed(command, workspace)
                if "up to date" not in out:
                    sys.exit(f"{' '.join(command)} had work to do in {workspace}; run it once first:\n{out}")
                seconds.append(elapsed)
            runs = ", ".join(f"{s:.2f}" for s in seconds)
            median = statistics.median(seconds)
            verdict = "under" if median < GOAL_SECONDS else "OVER"
            name = " ".join(command)
            print(f"no-op {name:10s} median {median:.2f} s ({runs}); {verdict} the {GOAL_SECONDS:g} s goal")


if __name__ == "__main__":
    main()
