"""One process against two workers (train.strategy: multi_worker) on this host: seconds and numbers of a stage.

    python -m benchmarks.multi_worker [--stage baseline] [--train-per-class 200] [--validation-per-class 100]
                                      [--epochs 3] [--rounds 2]

Encodes the sample data at 96 px, then runs the stage's real command (`python -m stages.<stage>`) as one process
(train.strategy: none) and as two worker processes on 127.0.0.1 (TF_CONFIG set here), alternating, and prints
per run the wall time of the command, the stage's own training seconds (metrics `seconds`) and its final val
accuracy and loss. On one host the two workers share its cores, so this measures the cost of the strategy
(collectives, each worker reading the whole split), not the gain of a second machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import encode, prepare_raw, recorded
from stages.lib import cluster

ROOT = Path(__file__).resolve().parents[1]
SIZE = 96


def write_params(path: Path, strategy: str, epochs: int) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["strategy"] = strategy
    raw["baseline"].update(image_size=SIZE, epochs=epochs)
    raw["model"].update(weights="none", image_size=SIZE)
    for stage in ("transfer", "finetune"):
        raw[stage]["epochs"] = epochs
    path.write_text(yaml.safe_dump(raw))


def run(tmp: Path, stage: str, workers: int, epochs: int) -> dict:
    """The stage once, as `workers` processes (1: strategy none); wall seconds and the chief's metrics."""
    write_params(tmp / "params.yaml", "multi_worker" if workers > 1 else "none", epochs)
    for leftover in ("logs", "checkpoints"):
        shutil.rmtree(tmp / leftover, ignore_errors=True)
    (tmp / "m.json").unlink(missing_ok=True)
    command = [sys.executable, "-m", f"stages.{stage}", "--params", str(tmp / "params.yaml"), "--records",
               str(tmp / "records"), "--model", str(tmp / f"{stage}.keras"), "--logs", str(tmp / "logs"),
               "--metrics", str(tmp / "m.json"), "--val-metrics", str(tmp / "val.json"),
               "--checkpoints", str(tmp / "checkpoints")]  # fmt: skip
    if stage == "finetune":
        command += ["--transfer-model", str(tmp / "transfer.keras")]
    workers_spec = cluster.local_workers(workers)
    start = time.perf_counter()
    processes = []
    for index in range(workers):
        env = dict(os.environ)
        if workers > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": workers_spec, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL))
    if any(process.wait() != 0 for process in processes):
        raise SystemExit(f"{stage} failed with {workers} worker(s)")
    metrics = json.loads((tmp / "m.json").read_text())
    return {"wall": time.perf_counter() - start, **metrics}


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("baseline", "transfer", "finetune"), default="baseline")
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--validation-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw, frames = prepare_raw(tmp, args.train_per_class, args.validation_per_class)
        encode(raw, frames, tmp / "records", SIZE)
        if args.stage == "finetune":
            run(tmp, "transfer", 1, args.epochs)  # its starting point
        print(f"{args.stage}, {len(frames['train'])} train images at {SIZE} px, {args.epochs} epochs:")
        print(f"  {'processes':>9} {'wall s':>8} {'training s':>11} {'val accuracy':>13} {'val loss':>9}")
        for _ in range(args.rounds):
            for workers in (1, 2):
                result = run(tmp, args.stage, workers, args.epochs)
                print(f"  {workers:>9} {result['wall']:>8.1f} {result['seconds']:>11.1f} "
                      f"{result['val.accuracy']:>13.4f} {result['val.loss']:>9.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
