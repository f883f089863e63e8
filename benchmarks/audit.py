"""The audit at any number of classes: its time and peak memory from 2 to 1,000 classes and at 20,000 images, and
how many planted label flips its judge finds, beside the judge it replaced.

    python -m benchmarks.audit [--parts scale flips analysis] [--classes 2 10 100 1000]

Each measurement runs in a process of its own (peak memory is a process's high-water mark):

- scale: the audit stage end to end, as `dvc repro` runs it (`python -m stages.audit`: TensorFlow's import, the
  frozen base's pass over every image and the analysis), on drawn images of 32 px (a colour and a shape per class,
  noise per image) in one folder of class folders: 2 x 700, 10 x 100, 100 x 10 and 1,000 x 5 images. Downloaded,
  split and encoded by the stages first; the bundled base at 96 px. Seconds whole and per part (the stage's own
  line), peak memory.
- flips: label flips planted at random positions (1%, 3%, 10% of the images; three seeds each; a flipped image
  gets another class at random) into the features of drawn animals: the demo's cats and dogs (2 x 200 train and
  2 x 500 validation, 96 px) and the sample's ten animals (10 x 60 and 10 x 60), with the bundled base and with
  random weights (calibrated, as the stage does). For each judge (`lda`: the audit's own; `logistic`: the
  logistic regression on the standardised features that it replaced, C 0.1, up to 1,000 lbfgs iterations, kept
  here as it was): recall and precision of the suspects at the list's size, the list's length, the judge's
  out-of-fold accuracy, seconds.
- analysis: everything after the features at 20,000 images (judge and confident learning, near-duplicates,
  outliers) on synthesised features: 1,280 dimensions as MobileNetV2 pools them, 2 and 100 classes, 3% of labels
  flipped and 20 near-copies planted across splits; seconds per part and peak memory.

Prints one line per measurement and writes the results, with the machine, to benchmarks/results/audit_<part>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import recorded

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "pretrained" / "mobilenet_v2_animals.weights.h5"
SPLITS = ("train", "val", "test")
IMAGES_PER_CLASS = {2: 700, 10: 100, 100: 10, 1000: 5}  # the scale part's datasets
FLIP_SHARES = (0.01, 0.03, 0.10)
FLIP_SEEDS = 3


def peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # kB on Linux


# ---- scale: the stage end to end ------------------------------------------------------------------------------


def drawn_archive(path: Path, classes: int, per_class: int, size: int = 32) -> None:
    """A zip of `classes` class folders of `per_class` drawn PNGs: each class a colour and a rectangle of its own,
    each image its own noise and offset."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (classes, 3))
    boxes = rng.integers(0, size // 2, (classes, 2))
    with zipfile.ZipFile(path, "w") as archive:
        for label in range(classes):
            for index in range(per_class):
                pixels = rng.normal(0, 40, (size, size, 3)) + colours[label]
                top, left = boxes[label] + rng.integers(0, 4, 2)
                pixels[top : top + size // 2, left : left + size // 2] = 255 - colours[label]
                out = io.BytesIO()
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="PNG")
                archive.writestr(f"drawn/class {label:04d}/{index}.png", out.getvalue())


def measure_scale(classes: int) -> dict:
    """Download, split and encode K classes with the stages, then time `python -m stages.audit` in a child."""
    from stages import download, encode, split

    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "archives").mkdir()
        drawn_archive(root / "archives" / "drawn.zip", classes, IMAGES_PER_CLASS[classes])
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["data"]["source"] = str(root / "archives" / "drawn.zip")
        params["model"].update(weights=str(WEIGHTS), image_size=96)
        params["encode"]["image_size"] = params["baseline"]["image_size"] = 96
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        common = ["--params", str(root / "params.yaml")]
        download.main([*common, "--out", str(root / "raw"), "--downloads", str(root / "downloads"),
                       "--archives", str(root / "archives")])  # fmt: skip
        split.main([*common, "--raw", str(root / "raw"), "--corrections", str(ROOT / "corrections.csv"),
                    "--out", str(root / "splits"),
                    "--metrics", str(root / "data.json"), "--details", str(root / "split.json")])  # fmt: skip
        encode.main([*common, "--raw", str(root / "raw"), "--splits", str(root / "splits"),
                     "--out", str(root / "records")])  # fmt: skip
        stage = [sys.executable, "-m", "stages.audit", *common, "--records", str(root / "records"),
                 "--splits", str(root / "splits"), "--raw", str(root / "raw"), "--out", str(root / "audit"),
                 "--metrics", str(root / "audit.json")]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(stage, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"error: the audit of {classes} classes failed:\n{done.stderr[-3000:]}")
        counts = json.loads((root / "audit.json").read_text())
    parts = re.search(r"\((features [^)]*)\)\s*$", done.stdout).group(1)
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return {"part": "scale", "classes": classes, "images": counts["audit.images"], "seconds": round(seconds, 1),
            "stage_parts": parts, "peak_mb": child_peak, "judge_accuracy": counts["audit.judge_accuracy"],
            "suspected_label_errors": counts["audit.suspected_label_errors"]}  # fmt: skip


# ---- flips: the judge against the one it replaced ------------------------------------------------------------


def previous_judge(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The logistic regression the audit used before (kept here to compare): standardised features, C 0.1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(head, features, labels, cv=cv, method="predict_proba")


def audit_judge(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The audit's own, on the principal components the stage gives it."""
    from stages.lib import audit

    return audit.judge_probabilities(audit.project(features, audit.JUDGE_DIMENSIONS, seed), labels, folds, seed)


JUDGES = {"lda": audit_judge, "logistic": previous_judge}


def drawn_features(classes: int, train_per_class: int, validation_per_class: int, weights: str) -> tuple:
    """(features, labels) of every split of the sample's first `classes` animals through the frozen base."""
    from benchmarks.common import encode, prepare_raw
    from stages.lib import models, records

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        raw, frames = prepare_raw(tmp, train_per_class, validation_per_class, classes=classes)
        encode(raw, frames, tmp / "records", 96)
        path = None if weights == "none" else str(WEIGHTS)
        base = models.build_base("mobilenet_v2", 96, path)
        if path is None:  # random weights: the BatchNorm statistics the stage gives them
            models.calibrate_on_train(base, "mobilenet_v2", tmp / "records", 96, 256, 42)
        feature_model = models.build_feature_model(base, "mobilenet_v2", 96)
        found = [
            models.features(feature_model, records.make_dataset(tmp / "records", s, image_size=96, batch_size=64))
            for s in SPLITS
        ]
    return np.concatenate([f for f, _ in found]), np.concatenate([y for _, y in found]).astype(int)


def plant_flips(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(given labels, flipped positions): `share` of the images given another class at random."""
    rng = np.random.default_rng(seed)
    classes = labels.max() + 1
    flipped = rng.choice(len(labels), round(share * len(labels)), replace=False)
    given = labels.copy()
    given[flipped] = (given[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return given, flipped


def measure_flips(classes: int, weights: str, judge: str) -> dict:
    from stages.lib import audit

    per_class = {2: (200, 500), 10: (60, 60)}[classes]
    features, labels = drawn_features(classes, *per_class, weights)
    names = [str(index) for index in range(classes)]
    rows = []
    for share in FLIP_SHARES:
        for seed in range(FLIP_SEEDS):
            given, flipped = plant_flips(labels, share, seed)
            start = time.perf_counter()
            probabilities = JUDGES[judge](features, given, 5, seed)
            paths = [str(i) for i in range(len(given))]
            images = pd.DataFrame({"path": paths, "split": "train", "label": given, "sha256": paths})
            issues = audit.find_label_issues(images, probabilities, names)
            found = len(set(issues["path"].astype(int)) & set(flipped))
            rows.append({"share": f"{share:.0%}", "recall": found / len(flipped),
                         "precision": found / max(len(issues), 1), "listed": len(issues),
                         "judge_accuracy": float((probabilities.argmax(axis=1) == given).mean()),
                         "seconds": time.perf_counter() - start})  # fmt: skip
    means = pd.DataFrame(rows).groupby("share", sort=False).mean().round(3)
    return {"part": "flips", "classes": classes, "weights": weights, "judge": judge, "images": len(labels),
            "by_share": means.to_dict(orient="index")}  # fmt: skip


# ---- analysis at 20,000 images ---------------------------------------------------------------------------------


def synthetic_features(count: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, true labels, split of each): pooled-feature-like vectors (non-negative, most variance in a few
    directions) and 20 planted near-copies (rows count-20.. are copies of rows 0..19, in the test split)."""
    rng = np.random.default_rng(seed)
    dims, rank = 1280, 64
    directions = rng.normal(0, 1, (rank, dims))
    labels = np.arange(count) % classes
    centres = rng.normal(0, 1.5, (classes, rank))
    latent = centres[labels] + rng.normal(0, 1, (count, rank))
    features = np.maximum(latent @ directions / np.sqrt(rank) + rng.normal(0, 0.6, (count, dims)), 0)
    features[-20:] = features[:20] * rng.uniform(0.97, 1.03, (20, dims))
    labels[-20:] = labels[:20]
    splits = np.array(["train"] * int(0.6 * count) + ["val"] * int(0.25 * count))
    splits = np.concatenate([splits, ["test"] * (count - len(splits))])
    return features.astype(np.float32), labels, splits


def measure_analysis(count: int, classes: int) -> dict:
    from stages.lib import audit

    features, truth, splits = synthetic_features(count, classes)
    given, flipped = plant_flips(truth, 0.03, 1)
    images = pd.DataFrame({"path": [f"{i:06d}" for i in range(count)], "split": splits, "label": given,
                           "sha256": [str(i) for i in range(count)]})  # fmt: skip
    names = [str(index) for index in range(classes)]
    before, seconds = peak_mb(), {}
    start = time.perf_counter()
    dimensions = audit.whitened_dimensions(count, features.shape[1], 128)
    projection = audit.project(features, max(audit.JUDGE_DIMENSIONS, dimensions), 0)
    seconds["projection"] = time.perf_counter() - start
    start = time.perf_counter()
    judge_features = projection.coordinates[:, : audit.JUDGE_DIMENSIONS]
    probabilities = audit.judge_probabilities(projection, given, 5, 0)
    issues = audit.find_label_issues(images, probabilities, names)
    seconds["judge"] = time.perf_counter() - start
    start = time.perf_counter()
    pairs = audit.near_duplicates(images, features, projection, 128, 0.9, SPLITS)
    seconds["near_duplicates"] = time.perf_counter() - start
    start = time.perf_counter()
    outliers = audit.find_outliers(images, judge_features, names)
    seconds["outliers"] = time.perf_counter() - start
    found = len(set(issues["path"].astype(int)) & set(flipped))
    planted = {(f"{i:06d}", f"{count - 20 + i:06d}") for i in range(20)}
    return {"part": "analysis", "images": count, "classes": classes,
            "seconds": {k: round(v, 1) for k, v in seconds.items()}, "peak_mb": peak_mb(), "mb_before": before,
            "flip_recall": round(found / len(flipped), 2), "flip_precision": round(found / max(len(issues), 1), 2),
            "planted_copies_found": len(planted & set(zip(pairs["path_a"], pairs["path_b"]))),
            "pairs": len(pairs), "outliers": len(outliers)}  # fmt: skip


def measurements(parts: list[str], class_counts: list[int]) -> list[list[str]]:
    """The child processes' arguments, one measurement each."""
    found = []
    if "scale" in parts:
        found += [["scale", str(classes)] for classes in class_counts]
    if "flips" in parts:
        for classes in (2, 10):
            for weights in ("bundled", "none"):
                found += [["flips", str(classes), weights, judge] for judge in JUDGES]
    if "analysis" in parts:
        found += [["analysis", "20000", str(classes)] for classes in (2, 100)]
    return found


def run_one(what: list[str]) -> dict:
    part, *rest = what
    if part == "scale":
        return measure_scale(int(rest[0]))
    if part == "flips":
        return measure_flips(int(rest[0]), rest[1], rest[2])
    return measure_analysis(int(rest[0]), int(rest[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["scale", "flips", "analysis"],
                        choices=["scale", "flips", "analysis"])  # fmt: skip
    parser.add_argument("--classes", type=int, nargs="+", default=list(IMAGES_PER_CLASS),
                        choices=list(IMAGES_PER_CLASS))  # fmt: skip
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # a child process's measurement
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return

    for part in args.parts:  # each part's results in a file of its own: results/audit_<part>.json

        def measure(part: str = part) -> None:
            for what in measurements([part], args.classes):
                child = [sys.executable, "-m", "benchmarks.audit", "--one", *what]
                done = subprocess.run(child, capture_output=True, text=True, cwd=ROOT)
                if done.returncode:
                    raise SystemExit(f"error: {' '.join(what)} failed:\n{done.stderr[-3000:]}")
                print(done.stdout.strip().splitlines()[-1])

        recorded(measure, part)()


if __name__ == "__main__":
    main()
