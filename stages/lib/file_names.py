"""What a file's name says about it, decided once for the pipeline and `predict`: left out of a dataset (hidden files,
macOS metadata, system files; `left_out`), or holding a control character, which would split a row of a list or
of a table in two (`has_control_character`). What is an image is decided by content, elsewhere (images.py).

Extraction (archive.py) leaves out both, each counted by its reason (`ignore_reason`, the keys of the manifest's
`ignored`); predict leaves out the first kind in a folder, and classifies a file with a control character in its
name, printing the name escaped.
"""

from __future__ import annotations

from pathlib import PurePosixPath

IGNORED_NAMES = {"Thumbs.db", ".DS_Store", "desktop.ini"}
_IGNORED_NAMES_LOWER = {name.lower() for name in IGNORED_NAMES}


def has_control_character(text: str) -> bool:
    """A carriage return, a newline or another control character (C0 or DEL) anywhere in `text`."""
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in text)


def ignore_reason(path: str) -> str | None:
    """Why a file (a posix path relative to the dataset's root) is not extracted, or None to keep it.

    Reasons (short stable strings, used as keys in a manifest): "control_character" (anywhere in the path: it would
    split a row of the split lists and of predict's output), then `left_out`'s. Directories are not passed here.
    (A file too long a name for the file system is skipped as "name_too_long" when the destination is known.)
    """
    if not PurePosixPath(path).parts:
        raise ValueError("ignore_reason() needs a non-empty member path")
    if has_control_character(path):
        return "control_character"
    return left_out(path)


def left_out(path: str) -> str | None:
    """Why a file (a posix relative path) is no part of a dataset by its name, or None: "macosx" (any component is
    __MACOSX), "hidden" (any component starts with '.'), "system_file" (its name in IGNORED_NAMES, in any case)."""
    parts = PurePosixPath(path).parts
    folder_reason = left_out_folder(parts)
    if folder_reason is not None:
        return folder_reason
    if parts[-1].lower() in _IGNORED_NAMES_LOWER:
        return "system_file"
    return None


def left_out_folder(parts: tuple[str, ...]) -> str | None:
    """The components' part of `left_out`, for a folder as for a file: "macosx", "hidden" or None."""
    if "__MACOSX" in parts:
        return "macosx"
    if any(part.startswith(".") for part in parts):
        return "hidden"
    return None
