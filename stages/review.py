"""Add decisions about images to corrections.csv: the audit's suggestions in bulk, or what the review page saved.

    imagefolder-review --accept-suggested N [--split test] [--max-score 0.05]
    imagefolder-review --merge review-decisions.csv
    python -m stages.review ...                     (the same)

--accept-suggested N: the N most suspicious images of reports/audit/label_issues.csv (lowest label quality score
first; only those of --split, only those scoring at most --max-score), each as a relabel to the class the audit
suggests. --merge FILE: the rows of FILE (reports/audit/review.html's Save writes review-decisions.csv), checked
as corrections.csv is. Either way the rows are merged into corrections.csv: a decision about an image it already
has replaces the earlier one, the rest are added; the file is replaced whole or not at all. Nothing runs by itself:
`dvc repro` applies corrections.csv (the split stage and what follows re-run), `dvc metrics diff` then says whether
it helped. A weak audit judge (metrics/audit.json) is warned of: look at its suggestions before accepting them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from stages.lib import audit, corrections, files
from stages.lib.corrections import Correction
from stages.lib.errors import PipelineError, require, warn
from stages.lib.file_lists import SPLITS

DEFAULT_AUDIT = Path("reports/audit")
DEFAULT_METRICS = Path("metrics/audit.json")
DEFAULT_RECORDS = Path("data/tfrecords")  # meta.json: the class names a relabel must name


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="imagefolder-review", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--accept-suggested", type=int, metavar="N", help="relabel the N most suspicious images")
    what.add_argument("--merge", type=Path, metavar="FILE", help="add the rows of FILE (the review page's)")
    parser.add_argument("--split", choices=SPLITS, help="with --accept-suggested: only images of this split")
    parser.add_argument("--max-score", type=float, help="with --accept-suggested: only images scoring at most this")
    parser.add_argument("--audit", type=Path, default=DEFAULT_AUDIT, help="the audit's lists (%(default)s)")
    parser.add_argument("--audit-metrics", type=Path, default=DEFAULT_METRICS, help="(%(default)s)")
    parser.add_argument("--records", type=Path, default=DEFAULT_RECORDS, help="the class names (%(default)s)")
    parser.add_argument("--corrections", type=Path, default=corrections.FILE, help="the file to add to (%(default)s)")
    args = parser.parse_args(argv)
    if args.accept_suggested is not None and args.accept_suggested < 1:
        parser.error("--accept-suggested: N must be at least 1")
    if args.merge is not None and (args.split or args.max_score is not None):
        parser.error("--split and --max-score choose among the audit's suggestions: use them with --accept-suggested")
    return args


def suggested(issues: pd.DataFrame, count: int, split: str | None, max_score: float | None) -> pd.DataFrame:
    """The `count` most suspicious rows of label_issues.csv (it is ranked: lowest score first), of `split` and at
    most `max_score` when given."""
    chosen = issues if split is None else issues[issues["split"] == split]
    if max_score is not None:
        chosen = chosen[chosen["score"] <= max_score]
    return chosen.head(count)


def class_names(records: Path) -> list[str] | None:
    """The dataset's classes (the encode stage's meta.json), or None before encode has run: the split stage then
    checks the labels."""
    meta = records / "meta.json"
    return json.loads(meta.read_text())["class_names"] if meta.is_file() else None


def weak_judge_warning(metrics_path: Path) -> str | None:
    if not metrics_path.is_file():
        return None
    metrics = json.loads(metrics_path.read_text())
    if not metrics.get("audit.judge_weak"):
        return None
    return (
        f"the audit's judge is weak (right on {metrics['audit.judge_accuracy']:.3f} of the images out of "
        f"fold, always the most frequent class: {metrics['audit.judge_chance']:.3f}): many of its suggestions are "
        "wrong; look at them (reports/audit/review.html) before accepting them"
    )


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    names = class_names(args.records)
    existing = corrections.read(args.corrections, names)
    if args.merge is not None:
        new = corrections.read(args.merge, names)
        source = f"{len(new)} rows of {args.merge}"
    else:
        issues = audit.read(require(args.audit, "audit"))[audit.LABEL_ISSUES]
        chosen = suggested(issues, args.accept_suggested, args.split, args.max_score)
        if chosen.empty:
            raise PipelineError(f"{args.audit / audit.LABEL_ISSUES}: no suspect to accept with these options")
        note = "the audit's suggestion, score {}".format
        new = [
            Correction(row.path, row.sha256, "relabel", row.suggested, note(row.score)) for row in chosen.itertuples()
        ]
        for row in new:
            corrections.check_row(row, args.audit / audit.LABEL_ISSUES, names)
        source = f"the {len(new)} most suspicious of {len(issues)} in {args.audit / audit.LABEL_ISSUES}, relabelled"
        source += " to the suggested class"
        warning = weak_judge_warning(args.audit_metrics)
        if warning:
            warn("imagefolder-review", warning)
    merged, added, replaced = corrections.merge(existing, new)
    files.write_text(args.corrections, corrections.to_csv(merged))
    return (
        f"imagefolder-review: {args.corrections}: {source}: {added} added, {replaced} replaced, "
        f"{len(new) - added - replaced} already there; {len(merged)} rows in all. `dvc repro` applies them (split and "
        "what follows re-run)"
    )


def cli() -> None:
    """Console-script entry point (`imagefolder-review`)."""
    try:
        print(main())
    except PipelineError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    cli()
