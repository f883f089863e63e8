"""split stage: data/raw -> data/splits/{train,val,test,skipped}.csv, metrics/data.json and metrics/split.json.

metrics/data.json is the headline `dvc metrics show` prints (images per split); metrics/split.json holds every
count (per class, skipped by reason, duplicates, imbalance) and the params read, versioned and diffable by name
(`dvc metrics diff --targets metrics/split.json`).
"""

from __future__ import annotations

from pathlib import Path

from stages.lib import corrections, files, stage_params
from stages.lib.cli import run, stage_parser
from stages.lib.errors import warn
from stages.lib.file_lists import (
    HEADLINE,
    SKIP_REASONS,
    SPLITS,
    find_class_names,
    make_splits,
    shape_warnings,
    warning_counts,
    warning_lines,
)
from stages.lib.params import Params

PARAMS = ("seed", "split.test_fraction", "split.holdout_fraction", "split.warn_aspect_ratio", "split.warn_min_side")


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="the download stage's class folders")
    parser.add_argument("--corrections", type=Path, required=True, help="corrections.csv: decisions about images")
    parser.add_output("--out", "the folder of split lists to write")
    parser.add_output("--metrics", "the headline data metrics JSON to write")
    parser.add_output("--details", "the JSON of every count to write")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)

    s = p.split
    corrected = corrections.read(args.corrections, find_class_names(args.raw))
    splits = make_splits(
        args.raw, test_fraction=s.test_fraction, holdout_fraction=s.holdout_fraction, seed=p.seed, corrected=corrected
    )
    warned = shape_warnings(splits.frames, warn_aspect_ratio=s.warn_aspect_ratio, warn_min_side=s.warn_min_side)
    with files.replace_dir(args.out) as tmp:
        for split in SPLITS:
            splits.frames[split].to_csv(tmp / f"{split}.csv", index=False, lineterminator="\n")
        splits.skipped.to_csv(tmp / "skipped.csv", index=False, lineterminator="\n")
        splits.corrections.outcomes.to_csv(tmp / corrections.OUTCOMES_FILE, index=False, lineterminator="\n")
    metrics = splits.metrics() | warning_counts(warned)
    files.write_json(args.details, metrics | stage_params.values_read(p))
    files.write_json(args.metrics, {key: metrics[key] for key in HEADLINE})

    reasons = ", ".join(f"{r} {metrics[f'skipped.{r}']}" for r in SKIP_REASONS if metrics[f"skipped.{r}"])
    print(
        "split: "
        + ", ".join(f"{s} {metrics[f'{s}.total']}" for s in SPLITS)
        + f"; skipped {metrics['skipped.total']}"
        + (f" ({reasons}: {args.out / 'skipped.csv'})" if reasons else "")
        + f"; duplicates removed {sum(splits.duplicates_removed.values())}"
    )
    for line in warning_lines(warned, s.warn_aspect_ratio, s.warn_min_side):
        warn("split", line)
    if metrics["corrections.rows"]:
        print(corrections.summary(metrics, args.corrections, args.out / corrections.OUTCOMES_FILE))
    return p


if __name__ == "__main__":
    run(main)
