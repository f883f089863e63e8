"""Turn the raw class folders into stable train / val / test file lists.

`train` stays train. `validation` is split per class into val and test with a seeded permutation, so
the lists are fixed files, not a `take`/`skip` on a shuffled dataset (which re-draws val and test every
epoch and leaks images between them). Every file is fully decoded once; unusable files are skipped
with a reason, and exact duplicates across splits are removed from the later split.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib.cli import PipelineError
from stages.lib.images import SKIP_REASONS as IMAGE_SKIP_REASONS
from stages.lib.images import check_image

SPLITS = ("train", "val", "test")  # also the order of precedence when removing duplicates
RAW_TRAIN, RAW_VALIDATION = "train", "validation"
COLUMNS = ["path", "label", "label_index", "sha256", "width", "height", "format", "mode"]
SKIPPED_COLUMNS = ["path", "reason", "detail", "sha256"]
SKIP_REASONS = IMAGE_SKIP_REASONS + ("no_class_folder",)


class SplitError(PipelineError):
    pass


@dataclass(frozen=True)
class Splits:
    frames: dict[str, pd.DataFrame]  # split name -> rows with COLUMNS, sorted by path
    skipped: pd.DataFrame  # SKIPPED_COLUMNS
    class_names: list[str]
    duplicates_removed: dict[str, int]  # per split: rows dropped because an earlier split has the same bytes
    duplicates_within: dict[str, int]  # per split: rows whose bytes already occur in the same split (kept)

    def metrics(self) -> dict[str, int]:
        """Flat counts for metrics/data.json; every key is present even when zero, so diffs line up."""
        out: dict[str, int] = {"classes": len(self.class_names)}
        for split in SPLITS:
            counts = self.frames[split]["label"].value_counts()
            for name in self.class_names:
                out[f"{split}.{name}"] = int(counts.get(name, 0))
            out[f"{split}.total"] = len(self.frames[split])
            out[f"duplicates_removed.{split}"] = self.duplicates_removed[split]
            out[f"duplicates_within.{split}"] = self.duplicates_within[split]
        reasons = Counter(self.skipped["reason"])
        for reason in SKIP_REASONS:
            out[f"skipped.{reason}"] = reasons.get(reason, 0)
        out["skipped.total"] = len(self.skipped)
        return out


def find_class_names(raw_dir: Path) -> list[str]:
    """Class names are the sub-folders of train/, sorted (cats=0, dogs=1); validation/ must have the same."""
    found = {}
    for folder in (RAW_TRAIN, RAW_VALIDATION):
        root = raw_dir / folder
        if not root.is_dir():
            raise SplitError(
                f"{root}: missing; expected the {RAW_TRAIN}/ and {RAW_VALIDATION}/ folders of the download stage"
            )
        found[folder] = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(found[RAW_TRAIN]) < 2:
        raise SplitError(f"{raw_dir / RAW_TRAIN}: needs at least two class folders, found {found[RAW_TRAIN]}")
    if found[RAW_TRAIN] != found[RAW_VALIDATION]:
        train, validation = found[RAW_TRAIN], found[RAW_VALIDATION]
        raise SplitError(f"{raw_dir}: class folders differ: train/ has {train}, validation/ has {validation}")
    return found[RAW_TRAIN]


def scan_folder(
    raw_dir: Path, folder: str, class_names: list[str], workers: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check every file under raw_dir/folder; return (usable rows, skipped rows), paths relative to raw_dir."""
    files = sorted(p for p in (raw_dir / folder).rglob("*") if p.is_file())
    # Pillow releases the GIL while decoding, so threads give real parallelism here.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        checks = list(pool.map(lambda p: check_image(p.read_bytes()), files))
    rows, skipped = [], []
    for path, check in zip(files, checks):
        rel = path.relative_to(raw_dir).as_posix()
        parts = path.relative_to(raw_dir / folder).parts
        label = parts[0] if len(parts) > 1 and parts[0] in class_names else None
        if label is None:
            skipped.append(
                dict(path=rel, reason="no_class_folder", detail="not inside a class folder", sha256=check.sha256)
            )
        elif check.skip_reason:
            skipped.append(dict(path=rel, reason=check.skip_reason, detail=check.detail, sha256=check.sha256))
        else:
            info = asdict(check)
            rows.append(
                dict(path=rel, label=label, label_index=class_names.index(label), **{c: info[c] for c in COLUMNS[3:]})
            )
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(skipped, columns=SKIPPED_COLUMNS)


def split_validation(frame: pd.DataFrame, test_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified, seeded split into (val, test): round(n * test_fraction) of each class go to test."""
    rng = np.random.default_rng(seed)
    test_paths: list[str] = []
    for _, group in frame.sort_values("path").groupby("label_index", sort=True):
        n_test = min(round(len(group) * test_fraction), len(group) - 1)  # keep at least one val image per class
        picked = rng.permutation(len(group))[:n_test]
        test_paths.extend(group["path"].iloc[picked])
    is_test = frame["path"].isin(test_paths)
    return _sorted(frame[~is_test]), _sorted(frame[is_test])


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


def make_splits(raw_dir: Path, *, test_fraction: float, seed: int) -> Splits:
    raw_dir = Path(raw_dir)
    class_names = find_class_names(raw_dir)
    train, skipped_train = scan_folder(raw_dir, RAW_TRAIN, class_names)
    validation, skipped_validation = scan_folder(raw_dir, RAW_VALIDATION, class_names)
    for name, frame in ((RAW_TRAIN, train), (RAW_VALIDATION, validation)):
        missing = sorted(set(class_names) - set(frame["label"]))
        if missing:
            raise SplitError(f"{raw_dir / name}: no usable images for class {', '.join(missing)}")
    val, test = split_validation(validation, test_fraction, seed)
    frames, removed, within = remove_cross_split_duplicates({"train": train, "val": val, "test": test})
    skipped = _sorted(pd.concat([skipped_train, skipped_validation], ignore_index=True))
    return Splits(frames, skipped, class_names, removed, within)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("path").reset_index(drop=True)
