"""Turn the raw class folders into stable train / val / test file lists.

data/raw holds one of the layouts of layouts.py. `train` stays train. `validation` is split into val and test
(split.test_fraction held out as test), so the lists are fixed files, not a `take`/`skip` on a shuffled dataset
(which re-draws val and test every epoch and leaks images between them). Which side an image goes to is decided by
its bytes and the seed alone (`place`): never by its label or by any other image, so correcting a label
(corrections.csv, applied before splitting) or adding an image moves no other image between val and test, and
`dvc metrics diff` compares like with like. Where the dataset has its own `test`, val and test are `validation`
and `test` as they are. A single folder of class folders (`images`) first gives split.holdout_fraction of its
images to `validation`, the same way.

Class names are the class folders of train (or images), sorted; label indices follow that order. Every file is
fully decoded once; unusable files are skipped with a reason, and exact duplicates across splits are removed
from the later split. An image whose bytes are filed under two or more classes (in one split or across splits) is
a label conflict: which label is right is unknown, and keeping any copy would train or test on a possibly wrong
one, so every copy is skipped (before val and test are drawn). A class with no usable image in a split is an error
that names the class and the split.

data/splits/skipped.csv (SKIPPED_COLUMNS; `read_skipped` reads it back) has one row per file not used:
- `path`: relative to data/raw, as in the split lists;
- `reason`: one of SKIP_REASONS (images.py's, `no_class_folder`, `label_conflict`), counted as `skipped.<reason>`
  in metrics/split.json;
- `detail`: one line for a person: what is wrong, and for a label conflict the other copies' paths and classes;
- `sha256`: of the file's bytes (a label conflict's copies share it);
- `label`: the class folder the file is in (the label it was given), empty for a file outside class folders.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib import corrections
from stages.lib.errors import PipelineError, require
from stages.lib.images import SKIP_REASONS as IMAGE_SKIP_REASONS
from stages.lib.images import check_image_file
from stages.lib.keys import class_key
from stages.lib.layouts import IMAGES, TEST, TRAIN, VALIDATION

SPLITS = ("train", "val", "test")  # also the order of precedence when removing duplicates
HEADLINE = tuple(f"{split}.total" for split in SPLITS)  # metrics/data.json: what `dvc metrics show` prints
# `given`: the class folder the image is in; `label`: its class once corrections.csv is applied (`correction`: the
# action applied to it, relabel or keep, or empty).
COLUMNS = ["path", "label", "label_index", "sha256", "width", "height", "format", "mode", "given", "correction"]
SKIPPED_COLUMNS = ["path", "reason", "detail", "sha256", "label"]  # data/splits/skipped.csv: the module docstring
SKIP_REASONS = IMAGE_SKIP_REASONS + ("no_class_folder", "label_conflict", "dropped")  # dropped: by corrections.csv
_SHOWN_COPIES = 5  # other copies a label conflict's detail names
SHAPE_WARNINGS = ("aspect_ratio", "min_side")  # metrics/split.json's warned.<name>, set by split.warn_<name>
_SHOWN_WARNED = 5  # images a warning line names


class SplitError(PipelineError):
    pass


@dataclass(frozen=True)
class Splits:
    frames: dict[str, pd.DataFrame]  # split name -> rows with COLUMNS, sorted by path
    skipped: pd.DataFrame  # SKIPPED_COLUMNS
    class_names: list[str]
    duplicates_removed: dict[str, int]  # per split: rows dropped because an earlier split has the same bytes
    duplicates_within: dict[str, int]  # per split: rows whose bytes already occur in the same split (kept)
    corrections: corrections.Applied  # corrections.csv's rows and what became of each

    def metrics(self) -> dict[str, int | float]:
        """Flat counts for metrics/data.json; every key is present even when zero, so diffs line up.
        `<split>.class.<name>`: images of a class (keys.py); `imbalance.<split>`: the largest class's count over the
        smallest's (1.0: balanced)."""
        out: dict[str, int | float] = {"classes": len(self.class_names)}
        for split in SPLITS:
            counts = self.frames[split]["label"].value_counts()
            for name in self.class_names:
                out[class_key(name, prefix=split)] = int(counts.get(name, 0))
            out[f"{split}.total"] = len(self.frames[split])
            sizes = [int(counts.get(name, 0)) for name in self.class_names]
            out[f"imbalance.{split}"] = round(max(sizes) / max(min(sizes), 1), 3)
            out[f"duplicates_removed.{split}"] = self.duplicates_removed[split]
            out[f"duplicates_within.{split}"] = self.duplicates_within[split]
        reasons = Counter(self.skipped["reason"])
        for reason in SKIP_REASONS:
            out[f"skipped.{reason}"] = reasons.get(reason, 0)
        out["skipped.total"] = len(self.skipped)
        return out | corrections.counts(self.corrections)


def read_split(splits_dir: Path, split: str) -> pd.DataFrame:
    """One split's list as make_splits wrote it. Every text column stays text: pandas would read a class `None`,
    `NA`, `null` or `nan` (a grading set None / Mild / Severe) as a missing value."""
    text = {column: str for column in ("path", "label", "sha256", "format", "mode", "given", "correction")}
    return pd.read_csv(require(Path(splits_dir) / f"{split}.csv", "split"), dtype=text, keep_default_na=False)


def read_skipped(splits_dir: Path) -> pd.DataFrame:
    """data/splits/skipped.csv as make_splits wrote it, every column text (a class `None` stays a name)."""
    path = require(Path(splits_dir) / "skipped.csv", "split")
    return pd.read_csv(path, dtype=dict.fromkeys(SKIPPED_COLUMNS, str), keep_default_na=False)


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_class_names(raw_dir: Path) -> list[str]:
    """The class folders of train/ (or images/), sorted; every other folder's classes must be among them."""
    primary = raw_dir / (IMAGES if (raw_dir / IMAGES).is_dir() else TRAIN)
    if not primary.is_dir() or (primary.name == TRAIN and not (raw_dir / VALIDATION).is_dir()):
        raise SplitError(
            f"{raw_dir}: expected train/ and validation/ (or images/) as the download stage writes them; "
            "run it first (dvc repro download)"
        )
    names = _class_folders(primary)
    if len(names) < 2:
        raise SplitError(f"{primary}: a classifier needs at least two class folders, found {names or 'none'}")
    for folder in (VALIDATION, TEST):
        extra = sorted(set(_class_folders(raw_dir / folder)) - set(names)) if (raw_dir / folder).is_dir() else []
        if extra:
            raise SplitError(
                f"{raw_dir / folder}: class {extra[0]!r} has no folder in {primary.name}/; every class needs train "
                f"images (train/ has {', '.join(names)})"
            )
    return names


def scan_folder(
    raw_dir: Path, folder: str, class_names: list[str], workers: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check every file under raw_dir/folder; return (usable rows, skipped rows), paths relative to raw_dir."""
    files = sorted(p for p in (raw_dir / folder).rglob("*") if p.is_file())
    # Pillow releases the GIL while decoding, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = list(pool.map(check_image_file, files))
    rows, skipped = [], []
    for path, check in zip(files, checks):
        rel = path.relative_to(raw_dir).as_posix()
        parts = path.relative_to(raw_dir / folder).parts
        label = parts[0] if len(parts) > 1 and parts[0] in class_names else None
        if label is None:
            skipped.append(
                dict(
                    path=rel,
                    reason="no_class_folder",
                    detail="not inside a class folder",
                    sha256=check.sha256,
                    label="",
                )
            )
        elif check.skip_reason:
            skipped.append(
                dict(path=rel, reason=check.skip_reason, detail=check.detail, sha256=check.sha256, label=label)
            )
        else:
            info = asdict(check)
            index, checked = class_names.index(label), {c: info[c] for c in COLUMNS[3:8]}
            rows.append(dict(path=rel, label=label, label_index=index, **checked, given=label, correction=""))
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


def remove_label_conflicts(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """(frames without any copy of an image filed under two or more classes, those copies as skipped rows).

    Every copy goes, whatever its split: which label is right is unknown. Each row's detail names the other copies
    (their paths and classes), so a person can decide and keep the right one."""
    rows = pd.concat(frames.values(), ignore_index=True)
    labels = rows.groupby("sha256")["label"].nunique()
    conflicting = set(labels.index[labels > 1])
    skipped = []
    for digest, copies in rows[rows["sha256"].isin(conflicting)].sort_values("path").groupby("sha256", sort=False):
        paths, labels = copies["path"].tolist(), copies["label"].tolist()
        named = [f"{p} (class {lab!r})" for p, lab in zip(paths[: _SHOWN_COPIES + 1], labels)]
        for index, (path, label) in enumerate(zip(paths, labels)):
            others = [text for at, text in enumerate(named) if at != index][:_SHOWN_COPIES]
            more = len(paths) - 1 - len(others)
            shown = ", ".join(others) + (f" and {more} more" if more else "")
            detail = (
                f"the same image as {shown}; which label is right is unknown: keep one copy, in its right class "
                "folder, and delete the others"
            )
            skipped.append(dict(path=path, reason="label_conflict", detail=detail, sha256=digest, label=label))
    kept = {name: frame[~frame["sha256"].isin(conflicting)] for name, frame in frames.items()}
    return kept, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


def place(sha256: pd.Series, seed: int) -> np.ndarray:
    """Each image's place in [0, 1): the first 8 bytes of sha256("<seed>:<the image's sha256>") as a fraction. It
    depends on the image's bytes and the seed, nothing else."""
    digests = (hashlib.sha256(f"{seed}:{digest}".encode()).digest()[:8] for digest in sha256)
    return np.fromiter((int.from_bytes(d, "big") / 2**64 for d in digests), dtype=np.float64, count=len(sha256))


def split_validation(
    frame: pd.DataFrame, fraction: float, seed: int, at_least: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, held out): an image is held out when its place is below `fraction`, so about that share of each
    class is, and no image's side depends on its label or on other images. One exception keeps every class on both
    sides: a class folder (`given`) the places leave with fewer than `at_least` images held out, or none kept, lends
    its images nearest the line to the other side (kept first: a class of n images holds out at most n - 1). (val,
    test) from validation; (train, validation) from a single folder, where validation later gives val and test one
    image each (at_least 2)."""
    frame = frame.reset_index(drop=True)
    places = place(frame["sha256"], seed)
    held = places < fraction
    if fraction > 0:
        for _, group in frame.groupby("given", sort=True):
            at = group.index.to_numpy()
            by_place = at[np.argsort(places[at], kind="stable")]  # ascending: held ones first, then kept ones
            missing = min(at_least, len(at) - 1) - int(held[at].sum())
            for i in [i for i in by_place if not held[i]][: max(missing, 0)]:  # the kept nearest the line first
                held[i] = True
            if len(at) >= 2 and held[at].all():
                held[by_place[-1]] = False  # the held one nearest the line
    return _sorted(frame[~held]), _sorted(frame[held])


def remove_cross_split_duplicates(
    frames: dict[str, pd.DataFrame],
) -> tuple[dict[str, pd.DataFrame], dict[str, int], dict[str, int]]:
    """Drop rows whose bytes appear in an earlier split (train, then val, then test); count within-split repeats."""
    seen: set[str] = set()
    kept, removed, within = {}, {}, {}
    for split in SPLITS:
        frame = frames[split]
        leaked = frame["sha256"].isin(seen)
        kept[split] = frame[~leaked]
        removed[split] = int(leaked.sum())
        within[split] = int(kept[split]["sha256"].duplicated().sum())
        seen.update(frame["sha256"])
    return kept, removed, within


def _require_every_class(frame: pd.DataFrame, class_names: list[str], where: Path, why: str = "") -> None:
    missing = [name for name in class_names if name not in set(frame["label"])]
    if missing:
        raise SplitError(f"{where}: no usable image of class {missing[0]!r}{why}")


def _require_every_class_in_test(test: pd.DataFrame, class_names: list[str], where: Path) -> None:
    """Each class folder of two or more images lends the test split one (split_validation); a class missing from it
    had a lone validation image, or corrections.csv relabelled its test images away (they stay in test)."""
    for name in sorted(set(class_names) - set(test["label"]), key=class_names.index)[:1]:
        away = test[(test["given"] == name) & (test["label"] != name)]
        if away.empty:
            raise SplitError(f"{where}: no usable image of class {name!r} in the test split: it has one validation "
                             "image, and val and test need one each")  # fmt: skip
        images, those = ("image", "that row") if len(away) == 1 else ("images", "those rows")
        raise SplitError(
            f"{where}: no usable image of class {name!r} in the test split: corrections.csv relabels its test {images} "
            f"{', '.join(away['path'])} to {', '.join(repr(label) for label in sorted(set(away['label'])))}, and a "
            f"correction moves no image between splits; add an image of the class to validation/, or take {those} out "
            "of corrections.csv"
        )


def make_splits(
    raw_dir: Path,
    *,
    test_fraction: float,
    holdout_fraction: float,
    seed: int,
    corrected: list[corrections.Correction] | None = None,
) -> Splits:
    """The split lists of data/raw, with `corrected` (corrections.csv's rows) applied before splitting."""
    raw_dir = Path(raw_dir)
    class_names = find_class_names(raw_dir)
    scanned, skipped = {}, []
    for folder in (IMAGES, TRAIN, VALIDATION, TEST):
        if (raw_dir / folder).is_dir():
            scanned[folder], folder_skipped = scan_folder(raw_dir, folder, class_names)
            skipped.append(folder_skipped)
            _require_every_class(scanned[folder], class_names, raw_dir / folder)
    scanned, applied = apply_corrections(scanned, corrected or [], class_names)
    skipped.append(applied.dropped)
    for folder, frame in scanned.items():
        _require_every_class(frame, class_names, raw_dir / folder, " once corrections.csv was applied")
    scanned, conflicts = remove_label_conflicts(scanned)
    skipped.append(conflicts)
    for folder, frame in scanned.items():
        why = " once the images also filed under another class were left out (label conflicts)"
        _require_every_class(frame, class_names, raw_dir / folder, why)
    if IMAGES in scanned:
        scanned[TRAIN], scanned[VALIDATION] = split_validation(scanned[IMAGES], holdout_fraction, seed + 1, 2)
        held_out = " in validation: it has fewer than three images, and train, val and test need one each"
        _require_every_class(scanned[VALIDATION], class_names, raw_dir / IMAGES, held_out)
    if TEST in scanned:  # the dataset's own test folder
        val, test = scanned[VALIDATION], scanned[TEST]
    else:
        val, test = split_validation(scanned[VALIDATION], test_fraction, seed)
        _require_every_class_in_test(test, class_names, raw_dir / VALIDATION)
    frames, removed, within = remove_cross_split_duplicates({"train": scanned[TRAIN], "val": val, "test": test})
    for split, frame in frames.items():
        _require_every_class(
            frame, class_names, raw_dir, f" left in the {split} split once duplicates of earlier splits were removed"
        )
    return Splits(frames, _sorted(pd.concat(skipped, ignore_index=True)), class_names, removed, within, applied)


def apply_corrections(
    scanned: dict[str, pd.DataFrame], corrected: list[corrections.Correction], class_names: list[str]
) -> tuple[dict[str, pd.DataFrame], corrections.Applied]:
    """corrections.apply over every folder at once (a row applies to its image's bytes wherever they are): the
    folders' frames relabelled (label_index follows) without the dropped images, and what was applied."""
    folders = list(scanned)
    every = pd.concat([frame.assign(folder=folder) for folder, frame in scanned.items()], ignore_index=True)
    applied = corrections.apply(every.drop(columns=["given", "correction"]), corrected)
    images = applied.images.assign(label_index=applied.images["label"].map(class_names.index))
    notes = {row.sha256: f"left out by corrections.csv line {row.line}" + (f": {row.note}" if row.note else "")
             for row in corrected}  # fmt: skip
    dropped = applied.dropped.assign(reason="dropped", detail=applied.dropped["sha256"].map(notes))
    applied = corrections.Applied(images, dropped[SKIPPED_COLUMNS], applied.outcomes)
    by_folder = {folder: images.loc[images["folder"] == folder, COLUMNS].reset_index(drop=True) for folder in folders}
    return by_folder, applied


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("path").reset_index(drop=True)


def shape_warnings(frames: dict[str, pd.DataFrame], *, warn_aspect_ratio: float, warn_min_side: int) -> pd.DataFrame:
    """The kept images every stage distorts, as rows (path, width, height, warning) sorted by warning and path:
    `aspect_ratio`, the longer side over warn_aspect_ratio times the shorter (squashed to a square, a 20000x20 strip
    becomes a smear); `min_side`, a side under warn_min_side pixels (a 1x1 image enlarged to a flat square).
    Kept, not skipped: they may be right for the data; named so that a person can look."""
    rows = pd.concat([frames[split] for split in SPLITS], ignore_index=True)
    longer, shorter = rows[["width", "height"]].max(axis=1), rows[["width", "height"]].min(axis=1)
    found = pd.concat(
        [
            rows[longer > warn_aspect_ratio * shorter].assign(warning="aspect_ratio"),
            rows[shorter < warn_min_side].assign(warning="min_side"),
        ]
    )
    return found[["path", "width", "height", "warning"]].sort_values(["warning", "path"]).reset_index(drop=True)


def warning_counts(warned: pd.DataFrame) -> dict[str, int]:
    """`warned.<name>` for metrics/split.json, every name present even when zero."""
    return {f"warned.{name}": int((warned["warning"] == name).sum()) for name in SHAPE_WARNINGS}


def warning_lines(warned: pd.DataFrame, warn_aspect_ratio: float, warn_min_side: int) -> list[str]:
    """One warning per kind of distortion found, naming the first images with their sizes (the split stage says
    them, errors.warn)."""
    ratio, side = f"split.warn_aspect_ratio={warn_aspect_ratio:g}", f"split.warn_min_side={warn_min_side}"
    what = {
        "aspect_ratio": f"far from square (the longer side over {ratio} times the shorter)",
        "min_side": f"with a side under {side} pixels",
    }
    why = {"aspect_ratio": "squashes an image to a square", "min_side": "enlarges an image to its square size"}
    lines = []
    for name in SHAPE_WARNINGS:
        rows = warned[warned["warning"] == name]
        if rows.empty:
            continue
        shown = [f"{row.path} {row.width}x{row.height}" for row in rows.head(_SHOWN_WARNED).itertuples()]
        more = (
            f" and {len(rows) - _SHOWN_WARNED} more (sizes in data/splits/*.csv)" if len(rows) > _SHOWN_WARNED else ""
        )
        images = "image" if len(rows) == 1 else "images"
        lines.append(f"{len(rows)} {images} {what[name]}: {', '.join(shown)}{more}; every stage {why[name]}")
    return lines
