"""audit stage: data/tfrecords + data/splits -> reports/audit/{label_issues,near_duplicates,outliers}.csv and
metrics/audit.json.

Which images to look at before trusting any number: suspected label errors, near-duplicates within and across
splits, and outliers (stages/lib/audit.py says how each list is made). The features are the frozen pretrained
base's (model.base with model.weights at model.image_size, calibrated as the transfer stage calibrates a random
base): the transfer model's features layer (models.build_feature_model), run once over every image of train, val
and test. It only reports: no image is moved or relabelled. With audit.enabled false it writes the three lists
empty and metrics that say it was off, so the pipeline and the report stay whole.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib import audit, files, review_page, stage_params
from stages.lib.cli import run, stage_parser
from stages.lib.errors import rerun, warn
from stages.lib.file_lists import SPLITS, read_skipped, read_split
from stages.lib.params import Params

PARAMS = (
    "seed",
    "model.base",
    "model.weights",
    "model.image_size",
    "model.calibration_images",
    "audit.enabled",
    "audit.folds",
    "audit.similarity_threshold",
    "audit.whiten_components",
    "audit.weak_judge_error",
    "audit.weak_judge_suspects",
    "audit.batch_size",
)


def split_features(feature_model, records_dir: Path, split: str, image_size: int, batch_size: int):
    """(features, labels, paths) of a split in stored order: models.features' one pass of the frozen base, with
    the paths the records carry."""
    from stages.lib import models, records

    dataset = records.make_dataset(records_dir, split, image_size=image_size, batch_size=batch_size, with_paths=True)
    paths: list[str] = []

    def images_and_labels():
        for images, labels, batch_paths in dataset:
            paths.extend(path.decode("utf-8") for path in batch_paths.numpy())
            yield images, labels

    features, labels = models.features(feature_model, images_and_labels())
    return features, labels, paths


def listed(splits_dir: Path, split: str, paths: list[str]) -> pd.DataFrame:
    """The split stage's sha256 and correction (keep, relabel or empty: corrections.csv) of each path, in order."""
    path = Path(splits_dir) / f"{split}.csv"
    rows = read_split(splits_dir, split).drop_duplicates("path").set_index("path")
    missing = [p for p in paths if p not in rows.index]
    if missing:
        raise rerun(path, "split", f"does not list {missing[0]!r} of the {split} records (re-run encode after it)")
    return rows.loc[paths, ["sha256", "correction"]].reset_index(drop=True)


def stored_images(records_dir: Path, paths: set[str]) -> dict[str, bytes]:
    """The stored JPEG of each of `paths` (one pass over the records' serialized examples, nothing decoded)."""
    import tensorflow as tf

    from stages.lib import records

    meta, found = records.read_meta(records_dir), {}
    for split in SPLITS:
        shards = [str(Path(records_dir) / name) for name in meta["splits"][split]["shards"]]
        for example in tf.data.TFRecordDataset(shards).map(records.parse):
            path = example["path"].numpy().decode("utf-8")
            if path in paths:
                found[path] = example["image"].numpy()
    return found


def review_html(
    args, tables: dict[str, pd.DataFrame], images: pd.DataFrame, class_names: list[str], judge, found: int
) -> str:
    """reports/audit/review.html for the lists (review_page.py): thumbnails of the listed images from the records,
    and of label conflicts' copies (in no split) from data/raw."""
    listed_paths = {*tables[audit.LABEL_ISSUES]["path"], *tables[audit.OUTLIERS]["path"]}
    listed_paths |= {*tables[audit.NEAR_DUPLICATES]["path_a"], *tables[audit.NEAR_DUPLICATES]["path_b"]}
    uris = {path: review_page.thumbnail_uri(data) for path, data in stored_images(args.records, listed_paths).items()}
    for path in tables[audit.LABEL_CONFLICTS]["path"].drop_duplicates():
        uris[path] = review_page.thumbnail_uri((args.raw / path).read_bytes())
    names = np.asarray(class_names, dtype=object)
    labels = dict(zip(images["path"], names[images["label"].to_numpy()]))
    summary = None
    if judge is not None:
        listed = len(tables[audit.LABEL_ISSUES])
        summary = {"accuracy": judge.accuracy, "low": judge.interval[0], "high": judge.interval[1],
                   "chance": judge.chance, "weak": judge.weak, "listed": listed, "found": found,
                   "weak_words": audit.weak_judge_words(found, listed)}  # fmt: skip
    lists = (audit.LABEL_ISSUES, audit.NEAR_DUPLICATES, audit.OUTLIERS, audit.LABEL_CONFLICTS)
    return review_page.render(review_page.page_data(tables, labels, class_names, summary, uris, lists))


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_argument("--records", type=Path, required=True, help="data/tfrecords: the encoded splits")
    parser.add_argument("--splits", type=Path, required=True, help="the split stage's lists (content hashes)")
    parser.add_argument("--raw", type=Path, required=True, help="data/raw: the images of label conflicts")
    parser.add_output("--out", "the folder of audit lists to write")
    parser.add_output("--metrics", "the metrics JSON to write")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    a = p.audit
    if not a.enabled:
        with files.replace_dir(args.out) as tmp:
            audit.write(tmp, audit.empty_tables())
        files.write_json(args.metrics, audit.disabled_metrics(SPLITS) | stage_params.values_read(p))
        print(f"audit: off (audit.enabled: false); empty lists in {args.out}")
        return p
    m, seed = p.model, p.seed
    calibration_images = m.calibration_images  # used with random weights only, read (and recorded) always
    start = time.perf_counter()
    # TensorFlow only now: --help, a bad argument or a bad param answer in a second, not after its 4-5 s import.
    from stages.lib import models, records

    class_names = records.read_meta(args.records)["class_names"]
    weights = models.resolve_weights(m.base, m.weights, m.image_size, "audit")
    base = models.build_base(m.base, m.image_size, weights)
    if weights is None and calibration_images:  # random weights: the statistics the transfer stage gives them
        models.calibrate_on_train(base, m.base, args.records, m.image_size, calibration_images, seed)
    feature_model = models.build_feature_model(base, m.base, m.image_size)
    features, frames = [], []
    for split in SPLITS:
        split_x, split_y, paths = split_features(feature_model, args.records, split, m.image_size, a.batch_size)
        features.append(split_x)
        frame = pd.DataFrame({"path": paths, "split": split, "label": split_y.astype(int)})
        frames.append(pd.concat([frame, listed(args.splits, split, paths)], axis=1))
    features, images = np.concatenate(features), pd.concat(frames, ignore_index=True)
    features_seconds = time.perf_counter() - start

    labels = images["label"].to_numpy()
    folds = audit.folds_for(labels, a.folds)
    if folds < a.folds:
        print(f"audit: {folds} folds, not audit.folds {a.folds}: the smallest class has {folds} images")
    dimensions = audit.whitened_dimensions(len(features), features.shape[1], a.whiten_components)
    projection = audit.project(features, max(audit.JUDGE_DIMENSIONS, dimensions), seed)
    judge_features = projection.coordinates[:, : audit.JUDGE_DIMENSIONS]
    seconds = {"features": features_seconds}
    start = time.perf_counter()
    probabilities = audit.judge_probabilities(projection, labels, folds, seed)
    judge = audit.judge_of(probabilities, labels, a.weak_judge_error)
    reviewed = (images["correction"] == "keep").to_numpy()  # corrections.csv: a person found the label right
    suspects = audit.find_label_issues(images, probabilities, class_names, reviewed)
    weak_list = a.weak_judge_suspects  # used by a weak judge only, read (and recorded) always
    issues = suspects.head(weak_list) if judge.weak else suspects
    seconds["judge"] = time.perf_counter() - start
    start = time.perf_counter()
    pairs = audit.near_duplicates(images, features, projection, a.whiten_components, a.similarity_threshold, SPLITS)
    near_duplicates_judged = pairs is not None
    if pairs is None:
        pairs = audit.empty_tables()[audit.NEAR_DUPLICATES]
    seconds["near-duplicates"] = time.perf_counter() - start
    start = time.perf_counter()
    outliers = audit.find_outliers(images, judge_features, class_names)
    seconds["outliers"] = time.perf_counter() - start
    conflicts = audit.label_conflicts(read_skipped(args.splits))
    tables = {audit.LABEL_ISSUES: issues, audit.NEAR_DUPLICATES: pairs, audit.OUTLIERS: outliers,
              audit.LABEL_CONFLICTS: conflicts}  # fmt: skip
    page = review_html(args, tables, images, class_names, judge, len(suspects))
    with files.replace_dir(args.out) as tmp:
        audit.write(tmp, tables)
        (tmp / audit.REVIEW_PAGE).write_text(page, encoding="utf-8")
    counts = audit.metrics(
        images, tables, SPLITS, folds=folds, dimensions=dimensions, judge=judge, suspects_found=len(suspects),
        near_duplicates_judged=near_duplicates_judged,
    )  # fmt: skip
    files.write_json(args.metrics, counts | stage_params.values_read(p))
    low, high = judge.interval
    print(
        f"audit: {len(images)} images; the judge is right on {judge.accuracy:.3f} [{low:.3f}, {high:.3f}] of them "
        f"out of fold (always the most frequent class: {judge.chance:.3f})"
    )
    if judge.weak:
        warn(
            "audit",
            f"the judge is weak (at chance, or wrong on more than audit.weak_judge_error {a.weak_judge_error} of the "
            f"images), so {audit.weak_judge_words(len(suspects), len(issues))}; a base pretrained on images like "
            "yours judges better",
        )
    if not near_duplicates_judged:
        print(
            f"audit: {len(images)} images are too few to judge near-duplicates by their features (whitening needs "
            f"{audit.IMAGES_PER_WHITENED_DIMENSION * min(a.whiten_components, audit.MIN_WHITENED_DIMENSIONS)} images); "
            "identical files are found by the split stage"
        )
    print(
        f"audit: {counts['audit.suspected_label_errors']} suspected label errors, "
        f"{counts['audit.near_duplicates_across_splits']} near-duplicate pairs across splits and "
        f"{counts['audit.near_duplicates_within_splits']} within, {counts['audit.outliers']} outliers -> {args.out} "
        f"({', '.join(f'{part} {s:.1f} s' for part, s in seconds.items())})"
    )
    return p


if __name__ == "__main__":
    run(main)
