"""The audit: which images to look at before trusting any number. From the frozen pretrained base's features of
every image of train, val and test (the audit stage computes them once), three lists, most suspicious first:

- **Suspected label errors.** Out-of-fold predicted probabilities for every image: k-fold cross-validation
  (scikit-learn) of a light head, a logistic regression on the standardised features, so no image is scored by a
  head that saw its label. cleanlab's confident learning (`cleanlab.filter.find_label_issues`) names the suspects;
  they are ranked by cleanlab's label quality score (`cleanlab.rank.get_label_quality_scores`, the out-of-fold
  probability of the given label: 0 is the most suspicious). The suggested label is the most probable class out of
  fold. The test split is audited with train and val in one cross-validation: its labels decide every reported
  number, and the audit's head is none of the pipeline's models, so seeing test labels in other folds leaks nothing
  into training or model choice.
- **Near-duplicates.** Every pair of images, within a split and across splits, whose features have a cosine
  similarity at or above a threshold. The features are PCA-whitened first (a standard step of image retrieval
  and copy detection): a frozen base's pooled features put most of their variance in a few directions, so two
  different pictures of the same kind of scene score as high as a resized copy; whitened, they do not. The search
  is scikit-learn's radius neighbours (chunked matrix products, not pairs in Python). `same_bytes` marks pairs of
  identical files (the split lists' sha256): the split stage removes those across splits, repeats within one
  split remain.
- **Outliers.** cleanlab's out-of-distribution score (`cleanlab.outlier.OutOfDistribution`: the average distance
  to an image's nearest neighbours in feature space, as a score in (0, 1]); an image is an outlier past the same
  fence cleanlab's Datalab draws by default, OUTLIER_IQRS interquartile ranges above the third quartile of those
  distances.

It only reports: nothing is moved or relabelled. Class names stay data (cells of the CSVs), never keys.
scikit-learn and cleanlab are imported where they are used, so the report, which reads these files, does not
import them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.cli import require, rerun

LABEL_ISSUES, NEAR_DUPLICATES, OUTLIERS = "label_issues.csv", "near_duplicates.csv", "outliers.csv"
COLUMNS = {
    LABEL_ISSUES: ["path", "split", "given", "suggested", "score"],
    NEAR_DUPLICATES: ["path_a", "split_a", "path_b", "split_b", "similarity", "same_bytes"],
    OUTLIERS: ["path", "split", "label", "score"],
}
NUMBERS = {"score", "similarity"}  # columns read back as floats; every other one is text (class names, paths)
DECIMALS = 4  # of the scores and similarities written
IMAGE_COLUMNS = ["path", "split", "label", "sha256"]  # what is audited: one row per image (label: class index)
# cleanlab Datalab's default outlier threshold for features (OutlierIssueManager.DEFAULT_THRESHOLDS["features"],
# 0.37037) as the number of interquartile ranges past the third quartile: 1 / 0.37037 - 1.
OUTLIER_IQRS = 1.7
# Whitening needs many more images than dimensions: with nearly as many, the small differences between a
# near-copy and its original become whole dimensions of their own and are blown up to the size of any other.
IMAGES_PER_WHITENED_DIMENSION = 4
# The logistic regression's inverse L2 strength on standardised features: on the demo's features with flips injected,
# C 1 listed more false suspects and converged slowly, 0.01 to 0.1 found the same flips.
HEAD_C = 0.1
HEAD_MAX_ITER = 1000  # lbfgs iterations; the default 100 stops short on 1,280 features and warns


def folds_for(labels: np.ndarray, folds: int) -> int:
    """audit.folds, or fewer when a class has fewer images: stratified folds need one image of each class each."""
    return int(min(folds, np.bincount(labels).min()))


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(images, classes) probabilities, each row from a head trained on the other folds (stratified, seeded)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = make_pipeline(StandardScaler(), LogisticRegression(C=HEAD_C, max_iter=HEAD_MAX_ITER))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(head, features, labels, cv=cv, method="predict_proba")


def find_label_issues(images: pd.DataFrame, probabilities: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """The suspects (cleanlab's confident learning), lowest label quality score first (ties by path)."""
    from cleanlab.filter import find_label_issues as confident_learning
    from cleanlab.rank import get_label_quality_scores

    labels = images["label"].to_numpy()
    suspects = confident_learning(labels, probabilities, n_jobs=1)  # no pool of worker processes to start
    scores = get_label_quality_scores(labels, probabilities)  # self-confidence: P(given label), out of fold
    names = np.asarray(class_names, dtype=object)
    frame = pd.DataFrame(
        {
            "path": images["path"].to_numpy(),
            "split": images["split"].to_numpy(),
            "given": names[labels],
            "suggested": names[probabilities.argmax(axis=1)],
            "score": scores,
        }
    )[suspects]
    return frame.sort_values(["score", "path"], kind="stable").reset_index(drop=True)


def similarity_vectors(features: np.ndarray, components: int, seed: int) -> np.ndarray:
    """Unit vectors whose dot products are the similarities compared with the threshold: the features PCA-whitened
    to `components` dimensions (at most one per IMAGES_PER_WHITENED_DIMENSION images), or as they are with 0."""
    vectors = np.asarray(features, dtype=np.float32)
    dimensions = whitened_dimensions(len(vectors), vectors.shape[1], components)
    if dimensions:
        from sklearn.decomposition import PCA

        vectors = PCA(n_components=dimensions, whiten=True, random_state=seed).fit_transform(vectors)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def whitened_dimensions(images: int, feature_dimensions: int, components: int) -> int:
    """The dimensions similarity_vectors keeps (0: the features as they are)."""
    dimensions = min(components, images // IMAGES_PER_WHITENED_DIMENSION, feature_dimensions)
    return dimensions if components and dimensions >= 1 else 0


def find_near_duplicates(
    images: pd.DataFrame, vectors: np.ndarray, threshold: float, split_order: tuple[str, ...]
) -> pd.DataFrame:
    """Every pair with a cosine similarity of at least `threshold`, once: `a` is the image of the earlier split in
    `split_order` (a train image beside the test image it nearly is), or the smaller path within one split. Pairs
    across splits come first, then those within one; each by similarity, highest first."""
    from sklearn.neighbors import NearestNeighbors

    columns = COLUMNS[NEAR_DUPLICATES]
    if len(vectors) < 2:
        return pd.DataFrame(columns=columns)
    search = NearestNeighbors(radius=1.0 - threshold, metric="cosine", algorithm="brute").fit(vectors)
    distances, neighbours = search.radius_neighbors()  # every image's neighbours within the radius, itself excluded
    first = np.repeat(np.arange(len(vectors)), [len(n) for n in neighbours])
    second = np.concatenate([*neighbours, np.empty(0, dtype=int)])
    similarity = 1.0 - np.concatenate([*distances, np.empty(0)])
    rank = images["split"].map({split: i for i, split in enumerate(split_order)}).to_numpy()
    paths = images["path"].to_numpy()
    a_first = (rank[first] < rank[second]) | ((rank[first] == rank[second]) & (paths[first] < paths[second]))
    a, b, similarity = first[a_first], second[a_first], similarity[a_first]  # each pair found from both ends
    sha256, splits = images["sha256"].to_numpy(), images["split"].to_numpy()
    frame = pd.DataFrame(
        {
            "path_a": paths[a],
            "split_a": splits[a],
            "path_b": paths[b],
            "split_b": splits[b],
            "similarity": np.minimum(similarity, 1.0),
            "same_bytes": sha256[a] == sha256[b],
        }
    )
    frame["within"] = frame["split_a"] == frame["split_b"]
    frame = frame.sort_values(["within", "similarity", "path_a", "path_b"], ascending=[True, False, True, True])
    return frame[columns].reset_index(drop=True)


def find_outliers(images: pd.DataFrame, features: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Images past the outlier fence (see the module docstring), lowest out-of-distribution score first."""
    from cleanlab.outlier import OutOfDistribution

    columns = COLUMNS[OUTLIERS]
    if len(features) < 3:  # no neighbours to be far from
        return pd.DataFrame(columns=columns)
    scores = OutOfDistribution().fit_score(features=np.asarray(features, dtype=np.float32), verbose=False)
    distance = -np.log(np.maximum(scores, np.finfo(np.float64).tiny))  # the score is exp(-distance / scale)
    q1, q3 = np.percentile(distance, [25, 75])
    outlying = distance > q3 + OUTLIER_IQRS * (q3 - q1)
    names = np.asarray(class_names, dtype=object)
    frame = pd.DataFrame(
        {
            "path": images["path"].to_numpy(),
            "split": images["split"].to_numpy(),
            "label": names[images["label"].to_numpy()],
            "score": scores,
        }
    )[outlying]
    return frame.sort_values(["score", "path"], kind="stable").reset_index(drop=True)


def metrics(
    images: pd.DataFrame,
    issues: pd.DataFrame,
    pairs: pd.DataFrame,
    outliers: pd.DataFrame,
    split_order: tuple[str, ...],
    folds: int,
    dimensions: int,
) -> dict[str, bool | int]:
    """Flat counts for metrics/audit.json, every key present (zero or not) so `dvc metrics diff` lines up."""
    within = pairs["split_a"] == pairs["split_b"]
    near_test = pairs.loc[~within & (pairs["split_b"] == split_order[-1]), "path_b"]
    counts = issues["split"].value_counts()
    return {
        "audit.enabled": True,
        "audit.images": len(images),
        "audit.folds": folds,
        "audit.whitened_dimensions": dimensions,
        "audit.suspected_label_errors": len(issues),
        **{f"audit.suspected_label_errors.{split}": int(counts.get(split, 0)) for split in split_order},
        "audit.near_duplicates_across_splits": int((~within).sum()),
        "audit.near_duplicates_within_splits": int(within.sum()),
        "audit.identical_files_within_splits": int((within & pairs["same_bytes"].astype(bool)).sum()),
        "audit.test_images_near_other_splits": int(near_test.nunique()),  # the last split of split_order
        "audit.outliers": len(outliers),
    }


def disabled_metrics(split_order: tuple[str, ...]) -> dict[str, bool | None]:
    """audit.enabled: false, and every count null: an audit that did not run found nothing, and says so."""
    empty = {name: pd.DataFrame(columns=columns) for name, columns in COLUMNS.items()}
    images = pd.DataFrame(columns=IMAGE_COLUMNS)
    counts = metrics(images, empty[LABEL_ISSUES], empty[NEAR_DUPLICATES], empty[OUTLIERS], split_order, 0, 0)
    return {key: None for key in counts} | {"audit.enabled": False}


def write(out_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The three CSVs into `out_dir` (a folder being built: files.replace_dir), fixed decimals, `\\n` lines."""
    for name, columns in COLUMNS.items():
        frame = tables[name][columns]
        frame.to_csv(Path(out_dir) / name, index=False, lineterminator="\n", float_format=f"%.{DECIMALS}f")


def empty_tables() -> dict[str, pd.DataFrame]:
    return {name: pd.DataFrame(columns=columns) for name, columns in COLUMNS.items()}


def read(out_dir: Path) -> dict[str, pd.DataFrame]:
    """The three CSVs as written: text as text (a class named `None` or `nan` stays that name), scores as floats."""
    tables = {}
    for name, columns in COLUMNS.items():
        path = require(Path(out_dir) / name, "audit")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if list(frame.columns) != columns:
            raise rerun(path, "audit", f"expected the columns {', '.join(columns)}, found {list(frame.columns)}")
        for column in NUMBERS & set(columns):
            frame[column] = frame[column].astype(float)
        if "same_bytes" in columns:
            frame["same_bytes"] = frame["same_bytes"] == "True"
        tables[name] = frame
    return tables
