"""The errors a user can fix: missing and unusable inputs name the stage that writes them; any exception in one line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from stages.lib import errors
from tests.conftest import ROOT


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


def test_a_warning_is_one_line_on_stderr_naming_its_stage(capsys):
    errors.warn("export", "transfer: val accuracy 0.5 is no better than chance")
    errors.note("transfer", "if it scores below the CNN, likely cause: random weights")
    out, err = capsys.readouterr()
    assert out == ""  # the results' stream stays the results'
    assert err == (
        "export: warning: transfer: val accuracy 0.5 is no better than chance\n"
        "transfer: note: if it scores below the CNN, likely cause: random weights\n"
    )


def test_every_warning_goes_through_warn():
    """One channel, one form: no module writes `warning:` or `note:` lines itself (they went to stdout in five places,
    and through logging in fetch.py)."""
    written = []
    for path in (ROOT / "stages").rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.search(r"(^|: )(warning|note): ", node.value):
                    written.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr == "warning" and getattr(node.value, "id", "") == "log":
                written.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert written == []
