"""Whether a model's test accuracy changed between two runs by more than the noise: image by image, on the test images
both runs scored (McNemar's exact test, stages/lib/intervals.py), what `dvc metrics diff` cannot say.

    .venv/bin/python scripts/compare_runs.py HEAD~1            # HEAD~1 against the workspace, every model
    .venv/bin/python scripts/compare_runs.py HEAD~2 HEAD~1     # two commits (or experiment names)

Reads each run's evaluation/<model>/predictions.csv through DVC (`dvc.api.open`, from the cache or a remote), so run
it inside the project. Each run is scored against its own labels: a label corrected in between (corrections.csv)
counts as it was in that run, and the lines say how many images changed label. Two runs scored on other test images
are not paired; each accuracy's interval is then the comparison (metrics/eval.json, `<model>.accuracy.low/high`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # stages/, when run as a script from anywhere

from stages.lib import intervals, reference  # noqa: E402
from stages.lib.cli import run
from stages.lib.errors import PipelineError  # noqa: E402

PREDICTIONS = "evaluation/{model}/predictions.csv"  # evaluate's per-image predictions (dvc.yaml: evaluation)
WORKSPACE = "workspace"


def read_predictions(rev: str | None, model: str) -> pd.DataFrame:
    """A model's predictions.csv as it was at `rev` (None: the workspace)."""
    import dvc.api
    from dvc.exceptions import DvcException

    path = PREDICTIONS.format(model=model)
    try:
        with dvc.api.open(path, rev=rev) as file:
            return pd.read_csv(file, dtype={"path": str}, keep_default_na=False)
    except (DvcException, FileNotFoundError) as exc:
        raise PipelineError(f"{rev or WORKSPACE}: {path}: {str(exc).splitlines()[0]}") from None


def compare(model: str, before: pd.DataFrame, after: pd.DataFrame, names: tuple[str, str]) -> str:
    """One line: the model's accuracy in both runs, and whether the change is inside the noise."""
    merged = before.merge(after, on="path", how="inner", suffixes=("_before", "_after"), validate="one_to_one")
    apart = len(before) + len(after) - 2 * len(merged)
    if apart:
        return (
            f"{model}: scored on other test images ({len(before) - len(merged)} only in {names[0]}, "
            f"{len(after) - len(merged)} only in {names[1]}): not a paired comparison; compare each accuracy's "
            "95% interval (metrics/eval.json)"
        )
    right = {side: merged[f"label_{side}"] == merged[f"predicted_{side}"] for side in ("before", "after")}
    change = intervals.mcnemar(right["after"].to_numpy(), right["before"].to_numpy())
    relabelled = int((merged["label_before"] != merged["label_after"]).sum())
    verdict = "inside the noise" if change.in_noise else "outside the noise"
    return (
        f"{model}: accuracy {right['before'].mean():.4f} in {names[0]}, {right['after'].mean():.4f} in {names[1]} "
        f"({change.difference:+.4f}) on the same {change.images} test images"
        + (f" ({relabelled} of them relabelled in between)" if relabelled else "")
        + f"; right only in {names[1]}: {change.first_only}, only in {names[0]}: {change.second_only}; "
        f"McNemar's exact test p = {change.p_value:.3g}: {verdict}"
    )


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="a git revision or experiment name: the earlier run")
    parser.add_argument("after", nargs="?", help="another; default: the workspace")
    parser.add_argument("--model", action="append", choices=reference.MODELS, help="one model (repeat); default: all")
    args = parser.parse_args(argv)
    names = (args.before, args.after or WORKSPACE)
    lines = []
    for model in args.model or reference.MODELS:
        lines.append(compare(model, read_predictions(args.before, model), read_predictions(args.after, model), names))
        print(lines[-1])
    return lines


if __name__ == "__main__":
    run(main)
