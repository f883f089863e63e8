"""The data loop measured on the demo's own sizes: what fixing planted label flips does to the numbers.

    python -m benchmarks.data_loop [--every 20] [--weights bundled none]

Draws the demo's cats and dogs (2 x 200 train, 2 x 500 validation; seed 0) with every `every`-th regular image filed
under the other class (5% with 20; its name keeps the truth: cat.17.jpg in dogs/), and runs scripts/demo.sh on it
(the demo's params, the bundled base or random weights). Then a reviewer who looks at every suspect: each planted
flip listed is relabelled to the suggested class, anything else listed is kept (imagefolder-review --merge), and
`dvc repro`. Prints and records (benchmarks/results/data_loop.json): the flips planted, listed and corrected; the
audit's list length and its judge's out-of-fold accuracy; each model's test accuracy with its 95% interval before
and after, as the pipeline reports it (on the labels of that run) and against the truth (the file names); the
stages the second run re-ran and its seconds; scripts/compare_runs.py's verdict between the two runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import recorded
from stages.lib import audit
from stages.lib.file_lists import SPLITS, read_split
from tests.conftest import flipped_sample_archive

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("baseline", "transfer", "finetune")
CLASS_INDEX = {"cats": 0, "dogs": 1}  # the demo's classes, sorted


def sh(*args: str, cwd: Path) -> str:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"error: {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr


def truth(path: str) -> str:
    return "cats" if Path(path).name.startswith("cat.") else "dogs"


def scores(workspace: Path) -> dict[str, str]:
    """Each model's test accuracy as reported (with its interval) and against the file names' truth."""
    evaluation = json.loads((workspace / "metrics" / "eval.json").read_text())
    out = {}
    for model in MODELS:
        predictions = pd.read_csv(workspace / "evaluation" / model / "predictions.csv", keep_default_na=False)
        true = (predictions["predicted"] == predictions["path"].map(truth).map(CLASS_INDEX)).mean()
        out[model] = (f"{evaluation[f'{model}.accuracy']:.3f} ({evaluation[f'{model}.accuracy.low']:.3f}-"
                      f"{evaluation[f'{model}.accuracy.high']:.3f}); against the truth {true:.3f}")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=20, help="flip every N-th regular image (default 20: 5%%)")
    parser.add_argument("--weights", nargs="+", choices=("bundled", "none"), default=["bundled", "none"])
    args = parser.parse_args()

    @recorded
    def measure() -> None:
        for weights in args.weights:
            loop(args.every, weights)

    measure()


def loop(every: int, weights: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        flipped = flipped_sample_archive(tmp / "flipped.zip", train_per_class=200, validation_per_class=500,
                                             every=every)  # fmt: skip
        workspace = tmp / "loop"
        settings = ["-S", f"data.source={tmp / 'flipped.zip'}"]
        if weights == "none":
            settings += ["-S", "model.weights=none"]
        start = time.perf_counter()
        sh("bash", str(ROOT / "scripts" / "demo.sh"), str(workspace), *settings, cwd=ROOT)
        print(f"first run: {time.perf_counter() - start:.0f} s; {len(flipped)} flips planted ({weights} base)")
        counts = json.loads((workspace / "metrics" / "audit.json").read_text())
        issues = audit.read(workspace / "reports" / "audit")[audit.LABEL_ISSUES]
        listed = set(issues["path"]) & flipped
        print(f"audit: judge right on {counts['audit.judge_accuracy']:.3f} ({counts['audit.judge_accuracy_low']:.3f}"
                  f"-{counts['audit.judge_accuracy_high']:.3f}) out of fold, weak: {counts['audit.judge_weak']}; "
                  f"{len(issues)} listed of {counts['audit.images']} images ({counts['audit.suspects_found']} found), "
                  f"{len(listed)} of them planted flips: precision {len(listed) / max(len(issues), 1):.2f}, "
                  f"recall {len(listed) / len(flipped):.2f}")  # fmt: skip
        before = scores(workspace)
        rows = ["path,sha256,action,label,note"] + [
            f"{row.path},{row.sha256},{'relabel' if row.path in flipped else 'keep'},"
            f"{row.suggested if row.path in flipped else ''},benchmark reviewer"
            for row in issues.itertuples()
        ]
        (workspace / "decisions.csv").write_text("\n".join(rows) + "\n")
        sh("python", "-m", "stages.review", "--merge", "decisions.csv", cwd=workspace)
        start = time.perf_counter()
        out = sh("dvc", "repro", cwd=workspace)
        seconds = time.perf_counter() - start
        ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")]
        print(f"second run: {seconds:.0f} s, re-ran {', '.join(ran)}")
        lists = pd.concat([read_split(workspace / "data" / "splits", split) for split in SPLITS])
        corrected = lists[lists["path"].isin(listed)]
        print(f"corrected: {int((corrected['label'] == corrected['path'].map(truth)).sum())} of {len(listed)} "
                  f"listed flips now carry their true label")  # fmt: skip
        after = scores(workspace)
        for model in MODELS:
            print(f"{model}: test accuracy before {before[model]}; after {after[model]}")
        sh("git", "-c", "user.name=b", "-c", "user.email=b@localhost", "commit", "-qam", "corrected", cwd=workspace)
        print(sh("python", str(ROOT / "scripts" / "compare_runs.py"), "HEAD~1", "HEAD", cwd=workspace).strip())


if __name__ == "__main__":
    main()
