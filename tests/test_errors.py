"""The errors a user can fix: missing and unusable inputs name the stage that writes them; any exception in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.lib import errors


def test_require_names_the_stage_that_writes_the_input(tmp_path: Path):
    assert errors.require(tmp_path, "encode") == tmp_path
    with pytest.raises(errors.MissingInput) as err:
        errors.require(tmp_path / "meta.json", "encode")
    assert str(err.value) == f"{tmp_path / 'meta.json'}: missing; run the encode stage first (dvc repro encode)"
    problem = errors.rerun(tmp_path / "m.keras", "finetune", "cannot be loaded")
    assert str(problem) == f"{tmp_path / 'm.keras'}: cannot be loaded; re-run the finetune stage (dvc repro finetune)"


def test_first_line_of_any_exception():
    assert errors.first_line(ValueError("one\ntwo")) == "one"
    assert errors.first_line(ValueError()) == "ValueError"


def test_a_full_disk_is_known_by_its_errno_or_by_tensorflow_s_text():
    assert errors.out_of_space(OSError(28, "No space left on device"))
    assert errors.out_of_space(RuntimeError("ResourceExhaustedError: ... Disk quota exceeded"))
    assert not errors.out_of_space(OSError(13, "Permission denied"))
