"""Where a run's numbers come from, beyond params and data: the git commit, library versions, the machine."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from stages.lib import runtime

# Distribution names whose versions the provenance lists; the first installed name of each row wins
# (TensorFlow is installed as tensorflow-cpu here).
LIBRARIES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "dvc": ("dvc",),
    "dvclive": ("dvclive",),
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "pillow": ("pillow",),
    "scikit-learn": ("scikit-learn",),
    "matplotlib": ("matplotlib",),
}


@dataclass(frozen=True)
class Provenance:
    commit: str | None  # None outside a git repository (or without git)
    dirty: bool | None  # tracked files differ from the commit (untracked files, such as outputs, do not count)
    versions: dict[str, str] = field(default_factory=dict)
    cpu: str = "unknown"  # the machine the report ran on; the training stages record their own (machine.*)
    cpu_features: tuple[str, ...] = ()

    def describe_commit(self) -> str:
        if self.commit is None:
            return "unknown (not a git repository)"
        return f"`{self.commit}` " + ("(tracked files have uncommitted changes)" if self.dirty else "(clean)")


def git_state(project_dir: Path) -> tuple[str | None, bool | None]:
    try:
        head = _git(project_dir, "rev-parse", "HEAD").strip()
        dirty = bool(_git(project_dir, "status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None, None
    return head, dirty


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30).stdout


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for label, distributions in LIBRARIES.items():
        versions[label] = "not installed"
        for name in distributions:
            try:
                versions[label] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def provenance(project_dir: Path) -> Provenance:
    cpu, features = runtime.cpu_info()
    return Provenance(*git_state(project_dir), library_versions(), cpu, tuple(features))
