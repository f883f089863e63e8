"""report stage: metrics, training logs, evaluation and test images -> reports/report.md + reports/figures/.

    python -m stages.report

One markdown file with the model table (beside reference figures from earlier experiments, labelled as
such), training curves, confusion matrices, ROC curves, a grid of test predictions, the dataset counts
and the provenance of the run (git commit, params.yaml, data archive hash, library versions). Figures
are linked by relative path, so reports/ reads on its own and as a pull-request comment.

The whole params.yaml is read as a file, for provenance (and model.weights / data source to say whether
the reference figures apply); the only param that shapes the report is report.grid_images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib import atomic, params, report
from stages.lib.cli import run

PARAMS = ("report.grid_images",)


def main(argv: list[str] | None = None) -> params.StageParams:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"), help="data.json, <model>.json, eval.json")
    parser.add_argument("--dvclive", type=Path, default=Path("dvclive"))
    parser.add_argument("--evaluation", type=Path, default=Path("evaluation"))
    parser.add_argument("--records", type=Path, default=Path("data/tfrecords"), help="for meta.json")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="manifest.json and the images")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--params", type=Path, default=params.PARAMS_FILE)
    args = parser.parse_args(argv)
    p = params.for_stage(PARAMS, args.params)

    # Every input is read before anything is drawn, so a missing one fails fast and names its stage.
    inputs = report.load_inputs(
        report.InputPaths(args.metrics, args.dvclive, args.evaluation, args.records, args.raw, args.params)
    )
    provenance = report.provenance(args.params.resolve().parent)  # git runs in the project root
    with atomic.replace_dir(args.out) as tmp:
        markdown = report.write_report(inputs, tmp, p.report.grid_images, provenance)
        (tmp / "report.md").write_text(markdown)  # the folder is swapped in whole, so a plain write is enough
    figures = report.referenced_figures(markdown)
    print(f"report: {args.out / 'report.md'} with {len(figures)} figures")
    return p


if __name__ == "__main__":
    run(main)
