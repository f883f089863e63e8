"""Provenance: the git state of the project (outputs do not make it dirty), library versions, the machine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stages.lib import provenance as report


def test_git_commit_and_dirty_state(tmp_path: Path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    (tmp_path / "a.txt").write_text("1")
    for command in (["init", "-q"], ["add", "a.txt"], ["commit", "-q", "-m", "x"]):
        subprocess.run(git + command, cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert report.git_state(tmp_path) == (head, False)
    (tmp_path / "untracked.txt").write_text("outputs do not count")
    assert report.git_state(tmp_path) == (head, False)
    (tmp_path / "a.txt").write_text("2")
    assert report.git_state(tmp_path) == (head, True)


def test_versions_and_machine_are_listed(tmp_path: Path):
    described = report.provenance(tmp_path)
    assert described.commit is None and described.describe_commit() == "unknown (not a git repository)"
    assert described.versions["tensorflow"] != "not installed" and described.versions["keras"] != "not installed"
    assert described.cpu != "" and all(f in report.runtime.KERNEL_FEATURES for f in described.cpu_features)
