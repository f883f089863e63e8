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
import sys
from collections.abc import Sequence
from pathlib import Path

from stages.lib import corrections, decisions
from stages.lib.errors import PipelineError, warn
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


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    names = decisions.class_names(args.records)
    existing = corrections.read(args.corrections, names)
    if args.merge is not None:
        new = corrections.read(args.merge, names)
        source = f"{len(new)} rows of {args.merge}"
    else:
        new, source = decisions.accepted_suggestions(
            args.audit, args.accept_suggested, args.split, args.max_score, names
        )
        warning = decisions.weak_judge_warning(args.audit_metrics)
        if warning:
            warn("imagefolder-review", warning)
    done = decisions.add(args.corrections, existing, new)
    return (
        f"imagefolder-review: {args.corrections}: {source}: {done.added} added, {done.replaced} replaced, "
        f"{done.unchanged} already there; {done.rows} rows in all. `dvc repro` applies them (split and what follows "
        "re-run)"
    )


def cli() -> None:
    """Console-script entry point (`imagefolder-review`)."""
    try:
        print(main())
    except PipelineError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    cli()
