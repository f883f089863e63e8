"""Classify image files with a model the export stage wrote: the work of the imagefolder-predict command
(stages/predict.py parses its options and prints what this module gives).

Where the model and its class names come from (`class_names_file`, `class_names`, `check_inputs`), the model of any
exported format loaded for inference (`load_model`, through serving.load_served: TensorFlow is imported only then),
the files a path names (`expand`: a folder's files less those file_names.left_out leaves out of a dataset), each read
as the encode stage reads images (images.load_for_model) and classified in batches (`predict_files`), and the rows in
a table, CSV or JSON (`make_rows`, `render`). A file that cannot be classified goes to a `report` callback, never
silently.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from stages.lib import heads
from stages.lib.errors import PipelineError, first_line
from stages.lib.file_names import has_control_character, left_out
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
    try:  # here, not at the top: usage errors answer without loading TensorFlow
        from stages.lib import serving
    except PipelineError as exc:  # its import checks the framework's private names it relies on (internals.py)
        raise UsageError(str(exc)) from None
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
    """Files to classify: files as given, folders as their sorted regular files, recursively, less those that are no
    part of a dataset by their name (file_names.left_out: hidden, __MACOSX, Thumbs.db, ...; extraction leaves them
    out too). A name with a control character is classified, and printed escaped. Anything else given or found (a
    dangling symbolic link, a missing path) goes to `report`, never silently."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if left_out(found.relative_to(path).as_posix()) or found.is_dir():
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


def columns(classes: list[str], top_k: int) -> list[str]:
    """The columns of `make_rows`' rows, in order."""
    names = ["path", "label", "probability"] + ([f"p_{classes[1]}"] if len(classes) == 2 else [])
    return names + [f"{name}_{rank}" for rank in range(2, top_k + 1) for name in ("label", "probability")]


def escaped(text: str) -> str:
    """`text` with control characters as escapes (\\n, \\r, \\t, \\x..): a file name holding a newline must not
    split a table row or an error line in two. CSV quotes such names and JSON escapes them already."""
    if not has_control_character(text):
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
