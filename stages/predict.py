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
import csv
import dataclasses
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from stages.lib import heads
from stages.lib.archive import ignore_reason
from stages.lib.errors import first_line
from stages.lib.images import load_for_model, read_image_file

DEFAULT_MODEL = Path("models/export/model.keras")  # export writes the chosen model there (serving.KERAS_FILE)
LABELS_FILE = "labels.txt"  # beside it (serving.LABELS_FILE)
DEFAULT_RECORDS = Path("data/tfrecords")
DEMO = Path("demo")  # where `make demo` runs the pipeline
BATCH_SIZE = 32  # images per model call
FORMATS = ("table", "csv", "json")


STDIN = "-"  # what many commands read as standard input; predict does not (a file named "-" is read as one)
WHAT_TO_DO_WITH_A_BAD_MODEL = "copy it or export it again (dvc repro export), or pass another --model"


class UsageError(Exception):
    """Bad options, no model, no class names: one line on stderr and exit status 2."""


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


def class_names_file(option: str | None, model: Path, records_dir: Path) -> Path | None:
    """Where the class names come from: None for --classes, else labels.txt beside the model (for a SavedModel
    folder, in the export folder that holds it: saved_model/1/ is two levels down), else meta.json."""
    if option is not None:
        return None
    folders = [model.parent] if not model.is_dir() else [model, model.parent, model.parent.parent]
    found = [folder / LABELS_FILE for folder in folders if (folder / LABELS_FILE).is_file()]
    return found[0] if found else records_dir / "meta.json"


def class_names(option: str | None, source: Path | None) -> list[str]:
    if source is None:
        names = [name.strip() for name in option.split(",")]
    elif source.name == LABELS_FILE:
        names = source.read_text(encoding="utf-8").splitlines()
    else:
        try:
            names = list(json.loads(source.read_text())["class_names"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{source}: no class_names in it ({exc}); pass e.g. --classes cats,dogs") from None
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise UsageError(f"{source or '--classes'}: need at least two distinct class names, got {names}")
    return names


def check_inputs(model: Path, names: Path | None) -> None:
    """Every missing input at once, and where a demo run's model is when there is one."""
    missing = []
    if not model.exists():
        missing.append(f"{model}: missing (train and export it first, dvc repro; or pass --model)")
    if names is not None and not names.is_file():
        missing.append(f"{names}: missing (or pass the class names, class 0 first, e.g. --classes cats,dogs)")
    if not missing:
        return
    demo = DEMO / DEFAULT_MODEL
    if demo.is_file() and model == DEFAULT_MODEL:
        missing.append(f"a demo run's model is {demo}, with its labels: pass --model {demo}")
    raise UsageError("; ".join(missing))


def load_model(path: Path, classes: list[str], tta: str = "none"):
    """The model in `path`, of any format export writes (serving.load_served), for inference with test-time
    augmentation `tta`; a file that does not load, or one with outputs for another number of classes, is a usage
    error."""
    from stages.lib import serving  # here, not at the top: usage errors answer without loading TensorFlow
    from stages.lib.errors import PipelineError

    try:
        served = serving.load_served(path)
    except serving.UnreadableModel as exc:
        raise UsageError(f"{exc}; {WHAT_TO_DO_WITH_A_BAD_MODEL}") from None
    except PipelineError as exc:
        raise UsageError(str(exc)) from None
    if served.units != heads.units(len(classes)):
        raise UsageError(
            f"{path}: expected {heads.units(len(classes))} output(s) for the {len(classes)} classes "
            f"{', '.join(classes)}; the model has {served.units}"
        )
    return dataclasses.replace(served, predict=serving.flip_averaged(served.predict)) if tta == "flip" else served


def skipped_in_a_folder(relative: str) -> bool:
    """What extraction leaves out of a dataset, less names with a control character: the pipeline skips those
    because they would split a row of its lists, while predict prints them escaped."""
    return ignore_reason(relative) not in (None, "control_character")


def not_a_file(path: Path) -> str:
    """Why `path`, which is neither a regular file nor a folder, is not classified."""
    if path.is_symlink() and not path.exists():
        return f"a symbolic link to {os.readlink(path)}, which does not exist"
    if str(path) == STDIN and not path.exists():
        return (
            "no such file; predict reads the paths given as arguments, not standard input (for a list of paths in "
            "a file: xargs -d '\\n' imagefolder-predict < paths.txt)"
        )
    return "no such file or directory" if not path.exists() else "not a regular file"


def expand(paths: Sequence[Path], report) -> list[Path]:
    """Files to classify: files as given, folders as their sorted regular files, recursively, less those that
    extraction leaves out of a dataset (archive.ignore_reason: hidden, __MACOSX, Thumbs.db, ...). Anything else
    given or found (a dangling symbolic link, a missing path) goes to `report`, never silently."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if skipped_in_a_folder(found.relative_to(path).as_posix()) or found.is_dir():
                    continue
                files.append(found) if found.is_file() else report(found, not_a_file(found))
        elif path.is_file():
            files.append(path)
        else:
            report(path, not_a_file(path))
    return files


def read_image(path: Path, size: int) -> np.ndarray:
    try:
        data = read_image_file(path)  # header and size judged before the bytes are read
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    return load_for_model(data, size)


def chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_files(model, files: Sequence[Path], report) -> list[tuple[str, np.ndarray]]:
    """(path, class probabilities) for every file that reads as an image; the others go to `report`."""
    results: list[tuple[str, np.ndarray]] = []
    for batch in chunks(files, BATCH_SIZE):
        names, arrays = [], []
        for path in batch:
            try:
                arrays.append(read_image(path, model.size))
                names.append(str(path))
            except Exception as exc:  # noqa: BLE001  (Pillow has many ways to fail on a bad file; never stop the rest)
                report(path, first_line(exc))
        if arrays:
            results.extend(zip(names, model.predict(np.stack(arrays))))
    return results


def make_rows(
    results: Sequence[tuple[str, np.ndarray]], classes: list[str], threshold: float, top_k: int
) -> list[dict]:
    rows = []
    for path, probabilities in results:
        label = int(heads.predicted(probabilities[None, :], threshold)[0])  # the same rule as the evaluate stage
        row = {"path": path, "label": classes[label], "probability": float(probabilities[label])}
        if len(classes) == 2:
            row[f"p_{classes[1]}"] = float(probabilities[1])
        others = [i for i in np.argsort(-probabilities, kind="stable") if i != label]
        for rank, index in enumerate(others[: top_k - 1], start=2):
            row |= {f"label_{rank}": classes[index], f"probability_{rank}": float(probabilities[index])}
        rows.append(row)
    return rows


def escaped(text: str) -> str:
    """`text` with control characters as escapes (\\n, \\r, \\t, \\x..): a file name holding a newline must not
    split a table row or an error line in two. CSV quotes such names and JSON escapes them already."""
    if not any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        return text
    return text.encode("unicode_escape").decode("ascii") if text.isascii() else repr(text)[1:-1]


def render(rows: list[dict], columns: list[str], fmt: str, model: str) -> str:
    """The rows in `fmt`, naming the model file they come from: a `model` column of CSV and JSON, a line above the
    table."""
    if fmt != "table":
        rows, columns = [row | {"model": model} for row in rows], [*columns, "model"]
    if fmt == "json":
        rounded = [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in rows]
        return json.dumps(rounded, indent=2) + "\n"
    if fmt == "table" and not rows:
        return ""  # nothing classified: the error lines say why, and a header alone says nothing
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[f"{v:.6f}" if isinstance(v, float) else v for v in row.values()] for row in rows])
        return out.getvalue()
    cells = [columns] + [[f"{v:.4f}" if isinstance(v, float) else escaped(v) for v in row.values()] for row in rows]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(columns))]
    numeric = [isinstance(v, float) for v in rows[0].values()] if rows else [False] * len(columns)
    lines = [
        "  ".join(str(c).rjust(w) if num else str(c).ljust(w) for c, w, num in zip(line, widths, numeric)).rstrip()
        for line in cells
    ]
    return "\n".join([f"model: {escaped(model)}", *lines]) + "\n"


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
        names = class_names_file(args.classes, args.model, args.records)
        check_inputs(args.model, names)  # before anything slow
        classes = class_names(args.classes, names)
        if not 1 <= args.top_k <= len(classes):
            raise UsageError(f"--top-k: must be between 1 and the {len(classes)} classes (got {args.top_k})")
        files = expand(args.paths, report)
        model = load_model(args.model, classes, args.tta)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = make_rows(predict_files(model, files, report), classes, args.threshold, args.top_k)
    columns = ["path", "label", "probability"] + ([f"p_{classes[1]}"] if len(classes) == 2 else [])
    columns += [f"{name}_{rank}" for rank in range(2, args.top_k + 1) for name in ("label", "probability")]
    sys.stdout.write(render(rows, columns, args.format, str(model.path)))
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
