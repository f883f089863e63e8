"""report stage: metrics, training logs, evaluation, the audit's lists and test images -> reports/report.md +
reports/figures/.

One markdown file with the model table (beside reference figures from earlier experiments, labelled as
such), training curves, confusion matrices, a grid of test predictions, the dataset counts and the
provenance of the run (git commit, params.yaml, data archive hash, library versions, machine), and the audit's
findings. Figures (and the audit stage's lists in reports/audit/, its own output) are linked by relative path, so
reports/ reads on its own and as a pull-request comment. The report writes report.md and figures/ only: the
folder is shared with the audit stage's output.

The whole params.yaml is read as a file, for provenance (and model.weights / data source to say whether
the reference figures apply); the params that shape the report are report.grid_images and audit.show.
"""

from __future__ import annotations

from pathlib import Path

from stages.lib import files, markdown, report_figures, report_inputs, stage_params
from stages.lib.cli import run, stage_parser
from stages.lib.params import Params
from stages.lib.provenance import provenance

PARAMS = ("report.grid_images", "audit.show")


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_argument("--metrics", type=Path, required=True, help="data.json, <model>.json, eval.json")
    parser.add_argument("--dvclive", type=Path, required=True, help="the training stages' dvclive folders")
    parser.add_argument("--evaluation", type=Path, required=True, help="the evaluate stage's per-model folders")
    parser.add_argument("--records", type=Path, required=True, help="for meta.json")
    parser.add_argument("--raw", type=Path, required=True, help="manifest.json and the images")
    parser.add_argument("--audit", type=Path, required=True, help="the audit stage's lists")
    parser.add_output("--out", "the report folder to write")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)

    # Every input is read before anything is drawn, so a missing one fails fast and names its stage.
    inputs = report_inputs.read_inputs(
        report_inputs.InputPaths(
            args.metrics, args.dvclive, args.evaluation, args.records, args.raw, args.params, args.audit
        )
    )
    run_provenance = provenance(args.params.resolve().parent)  # git runs in the project root
    with files.replace_dir(args.out / report_figures.FOLDER) as folder:  # swapped in whole once every one is drawn
        drawn = report_figures.draw(inputs, folder, p.report.grid_images, p.audit.show)
    text = markdown.write_report(inputs, drawn, run_provenance, p.audit.show)
    files.write_text(args.out / "report.md", text)
    print(f"report: {args.out / 'report.md'} with {len(drawn.links)} figures")
    return p


if __name__ == "__main__":
    run(main)
