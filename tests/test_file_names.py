"""What a file's name says: left out of a dataset (for extraction and predict alike), or holding a control character."""

from __future__ import annotations

import pytest

from stages.lib.file_names import has_control_character, ignore_reason, left_out


@pytest.mark.parametrize(
    ("member_path", "reason"),
    [
        ("train/cats/cat.1.jpg", None),
        ("train/dogs/DOG.2.JPEG", None),
        ("a/b.png", None),
        ("__MACOSX/train/cats/._cat.1.jpg", "macosx"),
        ("__MACOSX/readme.txt", "macosx"),
        (".DS_Store", "hidden"),
        ("train/.thumbnails/cat.jpg", "hidden"),
        ("train/Thumbs.db", "system_file"),
        ("THUMBS.DB", "system_file"),
        ("validation/Desktop.ini", "system_file"),
        ("cats_and_dogs_filtered/vectorize.py", None),  # extracted; not an image by content (images.py)
        ("train/cats/photo.webp", None),
        ("train/cats/scan.TIFF", None),
        ("README", None),
        ("train/cats/cat\r1.jpg", "control_character"),
        ("train/ca\nts/cat.1.jpg", "control_character"),
        ("train/cats/cat\x7f.jpg", "control_character"),
    ],
)
def test_ignore_reason(member_path: str, reason: str | None) -> None:
    assert ignore_reason(member_path) == reason


@pytest.mark.parametrize("name", ["a\rb.jpg", "two\nlines", "tab\there", "del\x7f", "\x00"])
def test_a_control_character_anywhere_is_one(name: str) -> None:
    assert has_control_character(name) and ignore_reason(f"train/cats/{name}") == "control_character"
    assert left_out(f"train/cats/{name}") is None  # by name alone it would be kept: predict classifies it


def test_unicode_is_no_control_character() -> None:
    assert not any(has_control_character(name) for name in ("café", "猫", "ｃａｔ", "a b", "\u200b", "\u0085x"[1:]))
