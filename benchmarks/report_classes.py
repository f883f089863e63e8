"""Time and peak memory of the report stage by number of classes: is the report of 1,000 classes under a minute and
1 GB?

    python -m benchmarks.report_classes [--classes 2 100 1000] [--test-per-class 2]

Each count is measured in a process of its own (peak memory is a process's high-water mark): the report stage's
inputs are written by hand (tests/test_markdown.py's builder: metrics, training logs, `test-per-class` test
predictions per class and their images), then `stages.report` runs on them. Prints one line per count and writes
the results, with the machine they were measured on, to benchmarks/results/report_classes.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "report_classes.json"


def measure(classes: int, test_per_class: int) -> dict:
    """Run in a fresh process: the report of `classes` classes, its seconds and the process's peak RSS."""
    from stages import report
    from tests.test_markdown import argv, build_inputs

    with tempfile.TemporaryDirectory() as tmp:
        names = ["cats", "dogs"] if classes == 2 else [f"class {i:04d}" for i in range(classes)]
        root = build_inputs(Path(tmp) / "project", classes=names, test_per_class=test_per_class)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        report.main(argv(root))
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"classes": classes, "seconds": round(seconds, 2), "peak_mb": round(peak_mb), "mb_before": before // 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[2, 100, 1000])
    parser.add_argument("--test-per-class", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process's count
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.test_per_class)))
        return
    from stages.lib import runtime

    rows = []
    for classes in args.classes:
        child = [sys.executable, "-m", "benchmarks.report_classes", "--one", str(classes)]
        done = subprocess.run(child + ["--test-per-class", str(args.test_per_class)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"error: the report of {classes} classes failed:\n{done.stderr}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"report of {classes:5d} classes: {row['seconds']:6.1f} s, peak {row['peak_mb']:5d} MB "
              f"({row['mb_before']} MB before the stage ran)")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": runtime.machine(), "rows": rows}, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
