"""Time and peak memory of the audit stage at the demo's size and at 20,000 images, and how many injected label
flips it finds on cats and dogs the base has never seen.

    python -m benchmarks.audit [--images 20000] [--feature-images 2000]

Each part runs in a process of its own (peak memory is a process's high-water mark):

- demo: data of the demo's size (the sample generator's 2x200 train and 2x500 validation images from seed 0, 1,400
  after the split, 96 px, the bundled base), then the real stage (`stages.audit`), timed whole, with its peak
  memory. Then, on the same images' features, label flips injected at random positions (1%, 3%, 10%; three seeds
  each) into the given labels: recall and precision of the suspects at the list's size.
- features: the frozen base's throughput alone (models.features over encoded sample images, after one warm-up
  batch) at 96 px and at the reference's 160 px, and what it makes of 20,000 images (extrapolated: images / rate).
- analysis: everything after the features (out-of-fold probabilities and cleanlab, whitening and the near-duplicate
  search, outliers) on `--images` synthesised features: 1,280 dimensions as MobileNetV2 pools them (non-negative,
  most variance in a few directions), two classes, 3% of labels flipped and 20 near-copies planted across splits;
  timed with its peak memory. (Drawing, splitting and encoding 20,000 images takes longer than the audit itself.)

Prints one line per part and writes the results, with the machine, to benchmarks/results/audit.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "audit.json"
WEIGHTS = ROOT / "pretrained" / "mobilenet_v2_animals.weights.h5"
SPLITS = ("train", "val", "test")


def peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # kB on Linux


def demo_project(tmp: Path, image_size: int) -> Path:
    """The demo's data at `image_size` px, split and encoded with the project's code, and params.yaml for it."""
    from benchmarks.common import encode, prepare_raw
    from stages.lib.file_lists import SPLITS as SPLIT_NAMES

    raw, frames = prepare_raw(tmp, train_per_class=200, validation_per_class=500)
    (tmp / "splits").mkdir()
    for split in SPLIT_NAMES:
        frames[split].to_csv(tmp / "splits" / f"{split}.csv", index=False)
    encode(raw, frames, tmp / "records", image_size)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(weights=str(WEIGHTS), image_size=image_size)
    params["encode"]["image_size"] = params["baseline"]["image_size"] = image_size
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp


def flips_found(features: np.ndarray, labels: np.ndarray, share: float, seed: int) -> tuple[float, float]:
    """Recall and precision of the suspects when `share` of the labels are flipped to the other class."""
    from stages.lib import audit

    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(labels), round(share * len(labels)), replace=False)
    given = labels.copy()
    given[flipped] = (given[flipped] + 1) % (labels.max() + 1)
    images = pd.DataFrame({"path": [str(i) for i in range(len(labels))], "split": "train", "label": given})
    probabilities = audit.out_of_fold_probabilities(features, given, 5, seed)
    issues = audit.find_label_issues(images, probabilities, ["cats", "dogs"])
    found = len(set(issues["path"].astype(int)) & set(flipped))
    return found / len(flipped), found / max(len(issues), 1)


def measure_demo() -> dict:
    from stages import audit as audit_stage

    with tempfile.TemporaryDirectory() as name:
        root = demo_project(Path(name), 96)
        args = ["--params", str(root / "params.yaml"), "--records", str(root / "records"), "--splits",
                str(root / "splits"), "--out", str(root / "audit"), "--metrics", str(root / "audit.json")]  # fmt: skip
        before = peak_mb()
        start = time.perf_counter()
        audit_stage.main(args)
        seconds, peak = time.perf_counter() - start, peak_mb()
        counts = json.loads((root / "audit.json").read_text())
        features, labels = [], []
        from stages.lib import models

        base = models.build_base("mobilenet_v2", 96, str(WEIGHTS))
        feature_model = models.build_feature_model(base, "mobilenet_v2", 96)
        for split in SPLITS:
            x, y, _ = audit_stage.split_features(feature_model, root / "records", split, 96, 64)
            features.append(x)
            labels.append(y)
    features, labels = np.concatenate(features), np.concatenate(labels).astype(int)
    flips = {}
    for share in (0.01, 0.03, 0.10):
        found = [flips_found(features, labels, share, seed) for seed in range(3)]
        flips[f"{share:.0%}"] = {"recall": round(float(np.mean([r for r, _ in found])), 2),
                                 "precision": round(float(np.mean([p for _, p in found])), 2)}  # fmt: skip
    return {"part": "demo", "images": counts["audit.images"], "seconds": round(seconds, 1), "peak_mb": peak,
            "mb_before": before, "suspected_label_errors": counts["audit.suspected_label_errors"],
            "near_duplicates": counts["audit.near_duplicates_across_splits"]
            + counts["audit.near_duplicates_within_splits"], "outliers": counts["audit.outliers"],
            "injected_flips": flips}  # fmt: skip


def measure_features(count: int) -> dict:
    from benchmarks.common import encode, prepare_raw
    from stages.lib import models, records

    rates = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        raw, frames = prepare_raw(tmp, train_per_class=count // 2, validation_per_class=10)
        for size in (96, 160):
            encode(raw, frames, tmp / f"records{size}", size)
            base = models.build_base("mobilenet_v2", size, str(WEIGHTS))
            feature_model = models.build_feature_model(base, "mobilenet_v2", size)
            dataset = records.make_dataset(tmp / f"records{size}", "train", image_size=size, batch_size=64)
            models.features(feature_model, dataset.take(1))  # warm-up: the first batch builds the graph
            start = time.perf_counter()
            features, _ = models.features(feature_model, dataset)
            rates[size] = len(features) / (time.perf_counter() - start)
    return {"part": "features", "images": count, "images_per_second": {k: round(v, 1) for k, v in rates.items()},
            "seconds_for_20000": {k: round(20000 / v) for k, v in rates.items()}, "peak_mb": peak_mb()}  # fmt: skip


def synthetic_features(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, true labels, split of each): pooled-feature-like vectors of two classes and 20 planted
    near-copies (rows count-20.. are copies of rows 0..19, placed in the test split)."""
    rng = np.random.default_rng(seed)
    dims, rank = 1280, 16
    directions = rng.normal(0, 1, (rank, dims))
    labels = np.arange(count) % 2
    centres = rng.normal(0, 1.5, (2, rank))
    latent = centres[labels] + rng.normal(0, 1, (count, rank))
    features = np.maximum(latent @ directions / np.sqrt(rank) + rng.normal(0, 0.6, (count, dims)), 0)
    features[-20:] = features[:20] * rng.uniform(0.97, 1.03, (20, dims))
    labels[-20:] = labels[:20]
    splits = np.array(["train"] * int(0.6 * count) + ["val"] * int(0.25 * count))
    splits = np.concatenate([splits, ["test"] * (count - len(splits))])
    return features.astype(np.float32), labels, splits


def measure_analysis(count: int) -> dict:
    from stages.lib import audit

    features, truth, splits = synthetic_features(count)
    given = truth.copy()
    flipped = np.random.default_rng(1).choice(count - 20, round(0.03 * count), replace=False) + 20
    given[flipped] = 1 - given[flipped]
    images = pd.DataFrame({"path": [f"{i:06d}" for i in range(count)], "split": splits, "label": given,
                           "sha256": [str(i) for i in range(count)]})  # fmt: skip
    before, start, seconds = peak_mb(), time.perf_counter(), {}
    probabilities = audit.out_of_fold_probabilities(features, given, 5, 0)
    issues = audit.find_label_issues(images, probabilities, ["a", "b"])
    seconds["label_issues"] = time.perf_counter() - start
    start = time.perf_counter()
    pairs = audit.find_near_duplicates(images, audit.similarity_vectors(features, 128, 0), 0.9, SPLITS)
    seconds["near_duplicates"] = time.perf_counter() - start
    start = time.perf_counter()
    outliers = audit.find_outliers(images, features, ["a", "b"])
    seconds["outliers"] = time.perf_counter() - start
    found = len(set(issues["path"].astype(int)) & set(flipped))
    planted = {(f"{i:06d}", f"{count - 20 + i:06d}") for i in range(20)}
    return {"part": "analysis", "images": count, "seconds": {k: round(v, 1) for k, v in seconds.items()},
            "peak_mb": peak_mb(), "mb_before": before, "flip_recall": round(found / len(flipped), 2),
            "flip_precision": round(found / max(len(issues), 1), 2),
            "planted_copies_found": len(planted & set(zip(pairs["path_a"], pairs["path_b"]))),
            "pairs": len(pairs), "outliers": len(outliers)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000, help="synthesised images of the analysis part")
    parser.add_argument("--feature-images", type=int, default=2000, help="sample images the throughput is timed on")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process's part
    args = parser.parse_args()
    if args.one:
        part = {
            "demo": measure_demo,
            "features": lambda: measure_features(args.feature_images),
            "analysis": lambda: measure_analysis(args.images),
            "analysis-demo": lambda: measure_analysis(1400),
        }
        print(json.dumps(part[args.one]()))  # fmt: skip
        return
    from stages.lib import runtime

    rows = []
    for part in ("demo", "analysis-demo", "analysis", "features"):
        child = [sys.executable, "-m", "benchmarks.audit", "--one", part, "--images", str(args.images),
                 "--feature-images", str(args.feature_images)]  # fmt: skip
        done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"error: part {part} failed:\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": runtime.machine(), "rows": rows}, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
