"""oneDNN on vs off: seconds and numbers of the training stages under TF_ENABLE_ONEDNN_OPTS=1 and =0.

    python -m benchmarks.onednn [--workspace DIR] [--rounds 2] [--stages baseline finetune]

Runs the demo's data stages into a temporary folder (scripts/demo.sh DIR transfer: download to transfer at
the demo's sizes, about 1.5 minutes), then re-runs each stage with `dvc repro -s -f <stage>` under both
settings, alternating (on, off, on, off, ...) so that a slow moment of this shared machine does not land on
one setting only. Prints the stage's own training seconds (metrics/<stage>.json `seconds`) per run, the
best per setting and their ratio, and the final val accuracy and loss per setting: the numbers move with the
setting, which is why identical numbers hold per machine configuration (README, Determinism).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import recorded
from benchmarks.dvc_noop import ROOT, venv_env

SETTINGS = ("1", "0")


def prepare(folder: Path) -> Path:
    """The demo workspace with every stage up to transfer run (finetune needs the transfer model)."""
    workspace = folder / "demo"
    start = time.perf_counter()
    subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), str(workspace), "transfer"], env=venv_env(), check=True)
    print(f"demo workspace up to transfer in {time.perf_counter() - start:.0f} s: {workspace}")
    return workspace


def run_stage(workspace: Path, stage: str, onednn: str) -> dict:
    """`dvc repro -s -f stage` under one setting; the stage's metrics plus the process's wall time."""
    env = venv_env() | {"TF_ENABLE_ONEDNN_OPTS": onednn}
    start = time.perf_counter()
    subprocess.run(["dvc", "repro", "-s", "-f", stage], cwd=workspace, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - start
    metrics = json.loads((workspace / "metrics" / f"{stage}.json").read_text())
    if metrics.get("machine.onednn") != int(onednn):
        raise SystemExit(f"{stage} recorded machine.onednn {metrics.get('machine.onednn')}, expected {onednn}")
    return metrics | {"wall": wall}


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, help="a demo workspace run at least up to transfer")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stages", nargs="+", default=["baseline", "finetune"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workspace = args.workspace.resolve() if args.workspace else prepare(Path(tmp))
        for stage in args.stages:
            runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
            for _ in range(args.rounds):
                for onednn in SETTINGS:
                    result = run_stage(workspace, stage, onednn)
                    runs[onednn].append(result)
                    seconds, wall = result["seconds"], result["wall"]
                    print(f"{stage} oneDNN={onednn}: training {seconds:.1f} s, process {wall:.1f} s")
            best = {s: min(r["seconds"] for r in runs[s]) for s in SETTINGS}
            print(
                f"{stage}: best training seconds, oneDNN on {best['1']:.1f} / off {best['0']:.1f}: "
                f"on takes {best['1'] / best['0']:.2f}x the time of off"
            )
            for onednn in SETTINGS:
                final = runs[onednn][-1]
                same = all(r["val.accuracy"] == final["val.accuracy"] for r in runs[onednn])
                print(
                    f"  oneDNN={onednn}: val accuracy {final['val.accuracy']:.4f}, val loss {final['val.loss']:.6f}"
                    f" ({'identical' if same else 'NOT identical'} across its {args.rounds} runs)"
                )


if __name__ == "__main__":
    main()
