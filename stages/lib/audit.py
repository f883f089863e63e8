"""The audit: which images to look at before trusting any number. From the frozen pretrained base's features of
every image of train, val and test (the audit stage computes them once), three lists, most suspicious first:

- **Suspected label errors.** Out-of-fold predicted probabilities for every image: k-fold cross-validation of a
  light judge, so no image is scored by a judge that saw its label. The judge is linear discriminant analysis on
  the features' JUDGE_DIMENSIONS leading principal components, fitted in closed form (its cost grows linearly in
  images and in classes), its probabilities temperature-scaled. cleanlab's confident learning
  (`cleanlab.filter.find_label_issues`) names the suspects; they are ranked by cleanlab's label quality score
  (`cleanlab.rank.get_label_quality_scores`, the out-of-fold probability of the given label: 0 is the most
  suspicious). The suggested label is the most probable class out of fold. How far to trust the list is the
  judge's own out-of-fold accuracy (`judge_of`, with its 95% interval): a weak judge (at chance, or wrong on more
  than audit.weak_judge_error of the images) lists only its audit.weak_judge_suspects most suspicious images, as
  most of its disagreements with the labels are its own mistakes. The test split is audited with train and val
  in one cross-validation: its labels decide every reported number, and the judge is none of the pipeline's
  models, so seeing test labels in other folds leaks nothing into training or model choice.
- **Near-duplicates.** Every pair of images, within a split and across splits, whose features have a cosine
  similarity at or above a threshold. The features are PCA-whitened first (a standard step of image retrieval
  and copy detection): a frozen base's pooled features put most of their variance in a few directions, so two
  different pictures of the same kind of scene score as high as a resized copy; whitened, they do not. Whitening
  needs images: below IMAGES_PER_WHITENED_DIMENSION x MIN_WHITENED_DIMENSIONS there are too few to judge, and no
  pair is reported (the metrics say so). The search is scikit-learn's radius neighbours (chunked matrix products,
  not pairs in Python). `same_bytes` marks pairs of identical files (the split lists' sha256): the split stage
  removes those across splits, repeats within one split remain.
- **Outliers.** cleanlab's out-of-distribution score (`cleanlab.outlier.OutOfDistribution`: the average distance
  to an image's nearest neighbours among the judge's principal components, as a score in (0, 1]); an image is
  an outlier past the same fence cleanlab's Datalab draws by default, OUTLIER_IQRS interquartile ranges above the
  third quartile of those distances.

It only reports: nothing is moved or relabelled. Class names stay data (cells of the CSVs), never keys.
scikit-learn and cleanlab are imported where they are used, so the report, which reads these files, does not
import them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib import chance, intervals
from stages.lib.errors import require, rerun

LABEL_ISSUES, NEAR_DUPLICATES, OUTLIERS = "label_issues.csv", "near_duplicates.csv", "outliers.csv"
LABEL_CONFLICTS = "label_conflicts.csv"  # the split stage's: one image's bytes under two classes, every copy
REVIEW_PAGE = "review.html"  # the lists as one page of decisions (review_page.py)
COLUMNS = {
    LABEL_ISSUES: ["path", "split", "given", "suggested", "score", "sha256"],
    NEAR_DUPLICATES: ["path_a", "split_a", "path_b", "split_b", "similarity", "same_bytes", "sha256_a", "sha256_b"],
    OUTLIERS: ["path", "split", "label", "score", "sha256"],
    LABEL_CONFLICTS: ["sha256", "path", "given"],
}
NUMBERS = {"score", "similarity"}  # columns read back as floats; every other one is text (class names, paths)
DECIMALS = 4  # of the scores and similarities written
# What is audited: one row per image (label: its class index; correction: corrections.csv's action, keep: reviewed)
IMAGE_COLUMNS = ["path", "split", "label", "sha256", "correction"]
# cleanlab Datalab's default outlier threshold for features (OutlierIssueManager.DEFAULT_THRESHOLDS["features"],
# 0.37037) as the number of interquartile ranges past the third quartile: 1 / 0.37037 - 1.
OUTLIER_IQRS = 1.7
# Whitening needs many more images than dimensions: with nearly as many, the small differences between a
# near-copy and its original become whole dimensions of their own and are blown up to the size of any other.
IMAGES_PER_WHITENED_DIMENSION = 4
# The judge and the outlier search see the features' leading principal components: on the demo's features with
# flips planted, 128 found as many flips as all 1,280 at a tenth of the cost (benchmarks/audit.py).
JUDGE_DIMENSIONS = 128
# Cosine similarity in few whitened dimensions is high between unrelated images by chance (random unit vectors in
# d dimensions have a cosine of about +-1/sqrt(d)): from 32 on, 0.9 is five of those. Fewer images than
# IMAGES_PER_WHITENED_DIMENSION x 32 are too few to judge near-duplicates by their features.
MIN_WHITENED_DIMENSIONS = 32
NEIGHBOURS = 10  # the judge's vote: as many as cleanlab's outlier score looks at


@dataclass(frozen=True)
class Projection:
    """The features on their leading principal axes (PCA, unwhitened), computed once for the judge, the
    near-duplicate search and the outliers."""

    coordinates: np.ndarray  # (images, dimensions), largest variance first
    variances: np.ndarray  # (dimensions,): each axis's variance, to whiten by


def project(features: np.ndarray, dimensions: int, seed: int) -> Projection:
    """The features' `dimensions` leading principal components (fewer with fewer images or features)."""
    from sklearn.decomposition import PCA

    features = np.asarray(features, dtype=np.float32)
    pca = PCA(n_components=max(1, min(dimensions, *features.shape)), random_state=seed)
    return Projection(pca.fit_transform(features), pca.explained_variance_)


def folds_for(labels: np.ndarray, folds: int) -> int:
    """audit.folds, or fewer when a class has fewer images: stratified folds need one image of each class each."""
    return int(min(folds, np.bincount(labels).min()))


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(images, classes) probabilities, each row from a judge fitted on the other folds (stratified, seeded).

    The judge is linear discriminant analysis, one covariance shared by the classes, Ledoit-Wolf shrunk: fitted in
    closed form, so its cost grows linearly in images and in classes (a logistic regression's iterations did not:
    1,000 classes had not finished after 330 s). Its probabilities are then temperature-scaled: a covariance
    estimated from few images per dimension makes them overconfident (about 5x at 10 classes), and confident
    learning counts an image by how sure the judge is."""
    from sklearn.model_selection import StratifiedKFold

    features = np.asarray(features, dtype=np.float64)
    classes = int(labels.max()) + 1
    scores = np.empty((len(labels), classes))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fitted_on, held_out in cv.split(features, labels):
        scores[held_out] = discriminant_scores(features[fitted_on], labels[fitted_on], classes, features[held_out])
    return temperature_scaled(scores, labels)


def judge_probabilities(projection: Projection, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The judge's (images, classes) probabilities, no image judged by what its own label taught: the mean of two
    views of the features, linear discriminant analysis out of fold (out_of_fold_probabilities) on the leading
    JUDGE_DIMENSIONS components and a vote of each image's NEIGHBOURS nearest others in the same components
    whitened (neighbour_vote, itself left out). The vote catches what a linear boundary cannot, the boundary what a
    few neighbours cannot: together they listed fewer false suspects at every share of planted flips than either
    alone or the logistic regression before them (benchmarks/audit.py)."""
    coordinates = projection.coordinates[:, :JUDGE_DIMENSIONS]
    linear = out_of_fold_probabilities(coordinates, labels, folds, seed)
    dimensions = min(coordinates.shape[1], len(labels) // IMAGES_PER_WHITENED_DIMENSION)
    if dimensions < 1 or len(labels) <= NEIGHBOURS:
        return linear
    whitened = coordinates[:, :dimensions] / np.sqrt(projection.variances[:dimensions])
    return (linear + neighbour_vote(whitened, labels, linear.shape[1])) / 2


def neighbour_vote(vectors: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Each image's class shares among its NEIGHBOURS nearest other images (cosine similarity; the image itself
    left out), with one vote more shared by the classes as often as they occur (so no class gets 0)."""
    from sklearn.neighbors import NearestNeighbors

    _, nearest = NearestNeighbors(n_neighbors=NEIGHBOURS, metric="cosine", algorithm="brute").fit(vectors).kneighbors()
    votes = np.zeros((len(labels), classes))
    np.add.at(votes, (np.repeat(np.arange(len(labels)), NEIGHBOURS), labels[nearest].ravel()), 1.0)
    prior = np.bincount(labels, minlength=classes) / len(labels)
    return (votes + prior) / (NEIGHBOURS + 1)


def discriminant_scores(features: np.ndarray, labels: np.ndarray, classes: int, scored: np.ndarray) -> np.ndarray:
    """Linear discriminant analysis fitted on (features, labels): each class's log posterior, up to a constant per
    row, for each row of `scored`. scikit-learn's LinearDiscriminantAnalysis shrinks a covariance per class (20 ms
    a class a fold, in Python); this pools the classes first and shrinks once."""
    from sklearn.covariance import ledoit_wolf

    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    means = np.zeros((classes, features.shape[1]))
    np.add.at(means, labels, features)
    means /= counts[:, None]
    covariance, _ = ledoit_wolf(features - means[labels], assume_centered=True)
    coefficients = np.linalg.solve(covariance, means.T)  # (dimensions, classes)
    intercepts = -0.5 * np.einsum("kd,dk->k", means, coefficients) + np.log(counts / counts.sum())
    return scored @ coefficients + intercepts


def temperature_scaled(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """softmax(scores / T), T minimising the log loss of the given labels (temperature scaling, Guo et al. 2017):
    one number for all images, searched in [1/20, 100]."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax, softmax

    rows = np.arange(len(labels))

    def log_loss(log_temperature: float) -> float:
        return -log_softmax(scores / np.exp(log_temperature), axis=1)[rows, labels].mean()

    best = minimize_scalar(log_loss, bounds=(np.log(0.05), np.log(100.0)), method="bounded")
    return softmax(scores / np.exp(best.x), axis=1)


def find_label_issues(
    images: pd.DataFrame, probabilities: np.ndarray, class_names: list[str], reviewed: np.ndarray | None = None
) -> pd.DataFrame:
    """The suspects (cleanlab's confident learning), lowest label quality score first (ties by path), without the
    `reviewed` images (corrections.csv's keep: a person looked and found the label right)."""
    from cleanlab.filter import find_label_issues as confident_learning
    from cleanlab.rank import get_label_quality_scores

    labels = images["label"].to_numpy()
    suspects = confident_learning(labels, probabilities, n_jobs=1)  # no pool of worker processes to start
    if reviewed is not None:
        suspects &= ~reviewed
    scores = get_label_quality_scores(labels, probabilities)  # self-confidence: P(given label), out of fold
    names = np.asarray(class_names, dtype=object)
    frame = pd.DataFrame(
        {
            "path": images["path"].to_numpy(),
            "split": images["split"].to_numpy(),
            "given": names[labels],
            "suggested": names[probabilities.argmax(axis=1)],
            "score": scores,
            "sha256": images["sha256"].to_numpy(),
        }
    )[suspects]
    return frame.sort_values(["score", "path"], kind="stable").reset_index(drop=True)


def label_conflicts(skipped: pd.DataFrame) -> pd.DataFrame:
    """The split stage's label conflicts (file_lists.read_skipped): every copy, grouped by image, by path."""
    rows = skipped[skipped["reason"] == "label_conflict"]
    frame = pd.DataFrame({"sha256": rows["sha256"], "path": rows["path"], "given": rows["label"]})
    return frame.sort_values(["sha256", "path"]).reset_index(drop=True)


def near_duplicates(
    images: pd.DataFrame,
    features: np.ndarray,
    projection: Projection,
    components: int,
    threshold: float,
    split_order: tuple[str, ...],
) -> pd.DataFrame | None:
    """find_near_duplicates in the whitened features (audit.whiten_components; 0: the features as they are), or
    None when the images are too few to judge near-duplicates by their features (too_few_to_whiten)."""
    if too_few_to_whiten(len(images), components):
        return None
    dimensions = whitened_dimensions(len(images), features.shape[1], components)
    return find_near_duplicates(images, similarity_vectors(features, projection, dimensions), threshold, split_order)


def similarity_vectors(features: np.ndarray, projection: Projection | None, dimensions: int) -> np.ndarray:
    """Unit vectors whose dot products are the similarities compared with the threshold: the projection's
    `dimensions` leading components whitened (each divided by its standard deviation, as PCA's whitening does), or
    with 0 the features as they are."""
    if dimensions:
        vectors = projection.coordinates[:, :dimensions] / np.sqrt(projection.variances[:dimensions])
    else:
        vectors = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def too_few_to_whiten(images: int, components: int) -> bool:
    """Whether `images` are too few for near-duplicates to be judged in whitened features (audit.whiten_components
    0 compares the features as they are, at any count)."""
    return components > 0 and images // IMAGES_PER_WHITENED_DIMENSION < min(components, MIN_WHITENED_DIMENSIONS)


def whitened_dimensions(images: int, feature_dimensions: int, components: int) -> int:
    """The dimensions similarity_vectors whitens to: audit.whiten_components, at most one per
    IMAGES_PER_WHITENED_DIMENSION images (0: the features as they are, or too few images to whiten)."""
    if too_few_to_whiten(images, components):
        return 0
    return min(components, images // IMAGES_PER_WHITENED_DIMENSION, feature_dimensions)


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
            "sha256_a": sha256[a],
            "sha256_b": sha256[b],
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
            "sha256": images["sha256"].to_numpy(),
        }
    )[outlying]
    return frame.sort_values(["score", "path"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Judge:
    """How far to trust the judge's suspects: its out-of-fold accuracy on the given labels, with its 95% interval,
    beside always answering the most frequent class."""

    accuracy: float
    interval: tuple[float, float]
    chance: float
    weak: bool  # at chance, or wrong on more than audit.weak_judge_error of the images


def judge_of(probabilities: np.ndarray, labels: np.ndarray, weak_error: float) -> Judge:
    right, count = int((probabilities.argmax(axis=1) == labels).sum()), len(labels)
    per_class = {str(index): int(images) for index, images in enumerate(np.bincount(labels))}
    accuracy = right / count
    weak = chance.at_chance(accuracy, per_class) or 1 - accuracy > weak_error
    return Judge(accuracy, intervals.wilson(right, count), chance.majority_share(per_class), weak)


def weak_judge_words(found: int, listed: int) -> str:
    """What a weak judge's list is, in the words of the stage, the report and the review page alike."""
    if listed < found:
        return f"most of its {found:,} suspects are its own mistakes: only its {listed:,} most suspicious are listed"
    return f"most of its {found:,} suspects are likely its own mistakes (all of them are listed)"


def metrics(
    images: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    split_order: tuple[str, ...],
    *,
    folds: int,
    dimensions: int,
    judge: Judge | None,
    suspects_found: int,
    near_duplicates_judged: bool,
) -> dict[str, bool | int | float | None]:
    """Flat counts for metrics/audit.json, every key present (zero or not) so `dvc metrics diff` lines up.
    `suspects_found` is confident learning's count; `suspected_label_errors` those listed (fewer when the judge is
    weak). `near_duplicates_judged` is false when there were too few images to judge them (too_few_to_whiten)."""
    issues, pairs, outliers = tables[LABEL_ISSUES], tables[NEAR_DUPLICATES], tables[OUTLIERS]
    within = pairs["split_a"] == pairs["split_b"]
    near_test = pairs.loc[~within & (pairs["split_b"] == split_order[-1]), "path_b"]
    counts = issues["split"].value_counts()
    return {
        "audit.enabled": True,
        "audit.images": len(images),
        "audit.folds": folds,
        "audit.judge_accuracy": None if judge is None else round(judge.accuracy, 4),
        "audit.judge_accuracy_low": None if judge is None else round(judge.interval[0], 4),
        "audit.judge_accuracy_high": None if judge is None else round(judge.interval[1], 4),
        "audit.judge_chance": None if judge is None else round(judge.chance, 4),
        "audit.judge_weak": None if judge is None else judge.weak,
        "audit.suspects_found": suspects_found,
        "audit.reviewed": int(images["correction"].eq("keep").sum()) if "correction" in images else 0,  # not listed
        "audit.suspected_label_errors": len(issues),
        **{f"audit.suspected_label_errors.{split}": int(counts.get(split, 0)) for split in split_order},
        "audit.whitened_dimensions": dimensions,
        "audit.near_duplicates_judged": near_duplicates_judged,
        "audit.near_duplicates_across_splits": int((~within).sum()),
        "audit.near_duplicates_within_splits": int(within.sum()),
        "audit.identical_files_within_splits": int((within & pairs["same_bytes"].astype(bool)).sum()),
        "audit.test_images_near_other_splits": int(near_test.nunique()),  # the last split of split_order
        "audit.outliers": len(outliers),
        "audit.label_conflicts": int(tables[LABEL_CONFLICTS]["sha256"].nunique()),  # images, each with 2+ copies
    }


def disabled_metrics(split_order: tuple[str, ...]) -> dict[str, bool | None]:
    """audit.enabled: false, and every count null: an audit that did not run found nothing, and says so."""
    images = pd.DataFrame(columns=IMAGE_COLUMNS)
    counts = metrics(
        images,
        empty_tables(),
        split_order,
        folds=0,
        dimensions=0,
        judge=None,
        suspects_found=0,
        near_duplicates_judged=False,
    )
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
