"""The exported formats of finished pipeline runs side by side: which format for which target, with numbers.

    python -m benchmarks.export_formats demo [NAME=WORKSPACE ...]

Each WORKSPACE is a project whose pipeline ran to the end (`make demo` writes demo/; `scripts/demo.sh DIR -S ...`
any other). Per format it records what the export stage measured in that run (metrics/export.json: bytes, test
accuracy, agreement with the Keras model, median single-image latency, the threads and CPU it ran on), and then
runs `imagefolder-predict` itself with every exported file on the run's test images, the original files of
data/splits/test.csv read as predict reads any photo: the share of them on which each file's label is the Keras
file's (`predict_agreement`). Prints a table per run and writes everything, with the command and the machine, to
benchmarks/results/export_formats.json, which docs/predict-and-export.md quotes (tests/test_readme.py holds the
tables to it).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "export_formats.json"
FILES = {  # what export writes, by format (serving.KERAS_FILE, SAVED_MODEL_DIR, TFLITE_FILES)
    "keras": "model.keras",
    "saved_model": "saved_model/1",
    "tflite_float32": "model_float32.tflite",
    "tflite_dynamic_range": "model_dynamic_range.tflite",
    "tflite_int8": "model_int8.tflite",
}


def predicted_labels(model: Path, images: list[Path]) -> list[str]:
    """imagefolder-predict's labels for `images` with `model`, in order (its CSV output, in this process)."""
    from stages import predict

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = predict.main([*map(str, images), "--model", str(model), "--format", "csv"])
    if code != 0:
        raise SystemExit(f"error: imagefolder-predict --model {model} failed on the test images (exit {code})")
    return [row["label"] for row in csv.DictReader(io.StringIO(out.getvalue()))]


def measure(name: str, workspace: Path) -> dict:
    record = json.loads((workspace / "metrics" / "export.json").read_text())
    split = json.loads((workspace / "metrics" / "split.json").read_text())
    with open(workspace / "data" / "splits" / "test.csv", newline="", encoding="utf-8") as listing:
        images = [workspace / "data" / "raw" / row["path"] for row in csv.DictReader(listing)]
    labels = {fmt: predicted_labels(workspace / "models" / "export" / file, images) for fmt, file in FILES.items()}
    formats = []
    for fmt, file in FILES.items():
        row = {"format": fmt, "file": file, "bytes": record[f"{fmt}.bytes"], "test_accuracy": record[f"{fmt}.accuracy"]}
        row["agreement"] = record.get(f"{fmt}.agreement", 1.0)  # the Keras model agrees with itself
        row["latency_ms"] = record[f"{fmt}.latency_ms"]
        same = sum(a == b for a, b in zip(labels[fmt], labels["keras"]))
        row["predict_agreement"] = round(same / len(images), 4)
        row["flagged"] = record.get(f"{fmt}.flagged_because", "")
        formats.append(row)
    return {
        "name": name,
        "classes": split["classes"],
        "test_images": record["test_images"],
        "predict_images": len(images),
        "model": record["model"],
        "image_size": json.loads((workspace / "data" / "tfrecords" / "meta.json").read_text())["image_size"],
        "latency_threads": record["latency.threads"],
        "latency_cpu_taken_by_others": record["latency.cpu_taken_by_others"],
        "machine": {key: record[key] for key in ("machine.cpu", "machine.cpu_features", "machine.onednn")},
        "export_params": {k.removeprefix("params_read."): v for k, v in record.items() if k.startswith("params_read.")},
        "formats": formats,
    }


def show(run: dict) -> None:
    print(f"{run['name']}: {run['classes']} classes, the {run['model']} model, {run['test_images']} test images, "
          f"latency on {run['machine']['machine.cpu']} with {run['latency_threads']} threads, other programs took "
          f"{run['latency_cpu_taken_by_others']:.0%} of the CPU")  # fmt: skip
    print(f"  {'format':22s} {'bytes':>11s} {'accuracy':>9s} {'agreement':>10s} {'predict':>8s} {'latency ms':>11s}")
    for row in run["formats"]:
        print(f"  {row['format']:22s} {row['bytes']:11,d} {row['test_accuracy']:9.4f} {row['agreement']:10.1%} "
              f"{row['predict_agreement']:8.1%} {row['latency_ms']:11.3g}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workspaces", nargs="+", help="NAME=WORKSPACE, or WORKSPACE (named by its folder)")
    args = parser.parse_args(argv)
    runs = []
    for spec in args.workspaces:
        name, _, path = spec.rpartition("=")
        workspace = Path(path)
        runs.append(measure(name or workspace.name, workspace))
        show(runs[-1])
    from stages.lib import files, runtime

    machine = runtime.machine() | {"machine.cores": os.cpu_count()}
    command = " ".join(["python -m benchmarks.export_formats", *(argv if argv is not None else sys.argv[1:])])
    files.write_json(RESULTS, {"command": command, "machine": machine, "runs": runs})
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
