"""Classify image files with a trained model.

    python -m stages.predict PATH... [--model models/export/model.keras] [--classes cats,dogs]
                                     [--threshold 0.5] [--top-k K] [--format table|csv|json] [--tta flip]
    imagefolder-predict PATH...      (the same, as a console script)

PATHs are image files or folders. A folder is searched recursively for regular files, in sorted order, skipping
what extraction leaves out of a dataset: names that start with "." (and hidden folders), __MACOSX/, Thumbs.db,
desktop.ini. Each image is read with Pillow the way the encode
stage reads it (EXIF orientation applied, converted to RGB, squashed to the model's square input size with
a bilinear resize), and the model runs on batches of 32 images. With --tta flip, each image's class
probabilities are averaged with its mirror image's (as evaluate.tta: flip does in evaluate and export).

One row per image, in input order:
  path          the file as given or found
  label         the predicted class: with two classes, class 1 if p_<class 1> >= --threshold, else class 0;
                with more, the most probable class
  probability   the model's probability of that label (with two classes and a threshold other than 0.5 it
                can be below 0.5)
  p_<class 1>   two classes only: the probability of class index 1 (sigmoid of its logit), whatever the threshold
  label_2, probability_2, ... label_K, probability_K
                with --top-k K: the next most probable classes and their probabilities
  model         CSV and JSON: the model file that ran (the table names it on its first line)
The model is by default the one the export stage chose (export.model: the best of the three on validation, unless
params.yaml names one) and copied to models/export/. --model takes any file export writes: model.keras (or any
.keras model of this pipeline), the SavedModel folder (saved_model/1, or saved_model/, whose highest version runs,
as TF Serving does) or a .tflite file (float32, dynamic range or int8), each fed the same images. Class names,
class 0 first, come from --classes (a comma list), else from labels.txt beside the model (for a SavedModel, in the
export folder above it), else from --records' meta.json; there must be as many as the model has classes (one
logit means two classes). Every missing input is named at once, with where a demo run's model is
when there is one (`make demo` writes demo/).

A file that is not a readable image (text named .jpg, truncated, zero-byte, missing, a symbolic link whose target
is gone) gets one line on stderr, `error: <path>: <reason>`, and the other files still run; `-` is a path like any
other, not standard input. A run that classified nothing prints no table (CSV: the header, JSON: []). Exit
status: 0 when every file was classified, 1 when some could not be, 2 for a usage error (bad option, missing or
unloadable model, no class names).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stages.lib import prediction
from stages.lib.prediction import DEFAULT_MODEL, DEFAULT_RECORDS, FORMATS, UsageError, escaped


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="imagefolder-predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders")
    parser.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help=f"a .keras file, a SavedModel folder or a .tflite file export wrote (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--classes", help="class names, class 0 first, e.g. cats,dogs (default: from meta.json)")
    parser.add_argument(
        "--records", type=Path, default=DEFAULT_RECORDS, help=f"where meta.json is (default {DEFAULT_RECORDS})"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="two classes: on the probability of class 1 (default 0.5)"
    )
    parser.add_argument("--top-k", type=int, default=1, help="also list the next K-1 most probable classes")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.add_argument(
        "--tta", choices=("none", "flip"), default="none", help="flip: average with the mirror image (default none)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and the error (or --help)
        return int(exc.code or 0)
    failures = 0

    def report(path: Path, reason: str) -> None:
        nonlocal failures
        failures += 1
        print(f"error: {escaped(str(path))}: {reason}", file=sys.stderr, flush=True)

    try:
        if not 0.0 <= args.threshold <= 1.0:
            raise UsageError(f"--threshold: must be between 0 and 1 (got {args.threshold})")
        names = prediction.class_names_file(args.classes, args.model, args.records)
        prediction.check_inputs(args.model, names)  # before anything slow
        classes = prediction.class_names(args.classes, names)
        if not 1 <= args.top_k <= len(classes):
            raise UsageError(f"--top-k: must be between 1 and the {len(classes)} classes (got {args.top_k})")
        files = prediction.expand(args.paths, report)
        model = prediction.load_model(args.model, classes, args.tta)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = prediction.make_rows(prediction.predict_files(model, files, report), classes, args.threshold, args.top_k)
    columns = prediction.columns(classes, args.top_k)
    sys.stdout.write(prediction.render(rows, columns, args.format, str(model.path)))
    return 1 if failures else 0


def cli() -> None:
    """Console-script entry point (`imagefolder-predict`); importing `stages` filtered TensorFlow's start-up lines."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `imagefolder-predict photos/ | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    cli()
