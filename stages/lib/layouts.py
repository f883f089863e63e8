"""The folder layouts a dataset comes in, and the one data/raw holds after the download stage.

Accepted, in the extracted archive (or the folder source) itself or in its single top folder (cats_and_dogs_filtered.zip
has one):
- `train/` (or `training/`) + `validation/` (or `val/`, `valid/`), optionally `test/` (or `testing/`) beside them:
  each of class folders;
- `train/` + `test/` (the hot-dog archive; `training/` + `testing/` in many public sets): `test/` is then the
  held-out folder the split stage divides into val and test, as it does with `validation/`;
- a single folder of class folders (`<class>/<image>`), which the split stage divides by split.holdout_fraction.
Folder names are matched without regard to case. A folder with a split's name is a split only when it holds class
folders; one that holds images is a class (CIFAR-100 and COCO have a class `train`).

Every class folder must hold a file: an empty one (or one holding only files extraction leaves out, such as
.DS_Store) is refused by name rather than dropped as a class, and so is a dataset of fewer than two classes.

data/raw then holds `train/`, `validation/` and, where the dataset had both, `test/`; or `images/` for a single
folder of class folders. The split stage reads that (file_lists.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stages.lib.errors import PipelineError

TRAIN, VALIDATION, TEST, IMAGES = "train", "validation", "test", "images"
# A split folder's names, matched without regard to case; two names of one split side by side are refused.
ALIASES = {
    "train": TRAIN,
    "training": TRAIN,
    "validation": VALIDATION,
    "val": VALIDATION,
    "valid": VALIDATION,
    "test": TEST,
    "testing": TEST,
}


class LayoutError(PipelineError):
    pass


@dataclass(frozen=True)
class Layout:
    folders: dict[str, Path]  # data/raw folder name -> the folder of class folders it is made from


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _holds_folders(folder: Path) -> bool:
    return bool(_subfolders(folder))


def _holds_files(folder: Path) -> bool:
    return any(p.is_file() for p in folder.iterdir())


def _is_empty(folder: Path) -> bool:
    """No file in it at any depth (nothing, or only empty folders)."""
    return not any(p.is_file() for p in folder.rglob("*"))


def _split_folders(folder: Path, where: str) -> dict[str, Path] | None:
    """train + validation [+ test], or train + test (as validation), each a folder of class folders; None if
    `folder` is not such a root. A split name whose folder holds images itself is a class (CIFAR-100's `train`)."""
    roles: dict[str, Path] = {}
    for sub in _subfolders(folder):
        role = ALIASES.get(sub.name.lower())
        if not role or not _holds_folders(sub):
            continue
        if role in roles:
            raise LayoutError(
                f"{where}: both {roles[role].name}/ and {sub.name}/ would be the {role} folder; keep one of them"
            )
        roles[role] = sub
    if TRAIN not in roles or not ({VALIDATION, TEST} & set(roles)):
        return None
    if VALIDATION not in roles:  # train + test: the held-out folder is test/
        roles[VALIDATION] = roles.pop(TEST)
    return roles


def _is_class_folders(folder: Path) -> bool:
    """At least two subfolders, each holding files of its own (not only folders) or nothing at all (an empty class
    folder, refused by name afterwards), one at least holding files. Their names may be split names: beside other
    classes, `train/` is the class of trains."""
    subs = _subfolders(folder)
    return (
        len(subs) >= 2
        and all(_holds_files(sub) or _is_empty(sub) for sub in subs)
        and any(_holds_files(sub) for sub in subs)
    )


def find_layout(tree: Path, source: str | Path | None = None, left_out: Iterable[str] = ()) -> Layout:
    """The layout of the extracted dataset in `tree` (or in its single top folder); LayoutError says what was found
    in `source` (the archive or dataset the tree came from; default the tree itself), naming folders by their path
    in it, never by the temporary folder the tree is in. `left_out`: the paths (relative to `tree`) of the files
    extraction left out, so that a class folder that held only those says so."""
    tree = Path(tree)
    source = source or tree
    tops = _subfolders(tree)
    candidates = [tree, *tops] if len(tops) == 1 else [tree]
    layout = _detect(tree, candidates, source)
    if layout is None:
        for candidate in reversed(candidates):  # the deeper first: ds/a/ is one class even beside ds/readme.txt
            subs = _subfolders(candidate)
            if len(subs) == 1 and _holds_files(subs[0]):
                raise _one_class(source, subs[0].relative_to(tree))
        found = _describe(tree) + (f"; {tops[0].name}/ holds: {_describe(tops[0])}" if len(tops) == 1 else "")
        raise LayoutError(
            f"no dataset folder in {source}: expected train/ (or training/) with validation/ (or val/, valid/, test/, "
            "testing/), each of class folders, or one folder of class folders, in it or in its single top-level "
            "folder; found: " + found
        )
    _refuse_empty_class_folders(layout, tree, source, left_out)
    classes = _subfolders(layout.folders.get(TRAIN) or layout.folders[IMAGES])
    if len(classes) < 2:
        raise _one_class(source, classes[0].relative_to(tree))
    return layout


def _detect(tree: Path, candidates: list[Path], source: str | Path) -> Layout | None:
    """Split folders in a candidate first, then a candidate of class folders; None if neither."""
    for candidate in candidates:
        inside = candidate.relative_to(tree).as_posix()
        roles = _split_folders(candidate, f"{source}" + ("" if inside == "." else f", in {inside}/"))
        if roles:
            return Layout({role: roles[role] for role in (TRAIN, VALIDATION, TEST) if role in roles})
    return next((Layout({IMAGES: c}) for c in candidates if _is_class_folders(c)), None)


def _one_class(source: str | Path, folder: Path) -> LayoutError:
    return LayoutError(
        f"{source}: a classifier needs at least two classes, found one class folder: {folder.as_posix()}/; put each "
        "class's images in a folder of its own beside it"
    )


def _refuse_empty_class_folders(layout: Layout, tree: Path, source: str | Path, left_out: Iterable[str]) -> None:
    """An empty class folder would drop its class (or fail later as a class without images): named here instead."""
    for folder in layout.folders.values():
        for class_folder in _subfolders(folder):
            if not _is_empty(class_folder):
                continue
            where = class_folder.relative_to(tree).as_posix()
            held = sorted({path.removeprefix(where + "/") for path in left_out if path.startswith(where + "/")})
            shown = ", ".join(held[:3]) + (f", ... ({len(held)} files)" if len(held) > 3 else "")
            what = (
                f"holds no image, only {shown} (hidden and system files are left out of every dataset)"
                if held
                else "is empty"
            )
            raise LayoutError(f"{source}: the class folder {where}/ {what}; put its images in it, or delete the folder")


def _describe(folder: Path) -> str:
    names = sorted(
        entry.name + ("/" + (" (empty)" if _is_empty(entry) else "") if entry.is_dir() else "")
        for entry in folder.iterdir()
    )
    return ", ".join(names[:20]) + (f", ... ({len(names)} entries)" if len(names) > 20 else "") if names else "nothing"
