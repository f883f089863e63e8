"""dvc.yaml agrees with the code: each stage's params are exactly its PARAMS, its deps cover the code it runs.

That the stages read exactly their PARAMS at run time (no fewer) is checked in each stage's own test,
through the `read` set of the params view the stage's main() returns.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from stages.lib import params
from tests.conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# Plumbing that does not decide what a stage writes; dvc.yaml leaves it out so that editing it
# (say, a new params section for a later stage) does not invalidate every output.
PLUMBING = {
    "stages/lib/params.py",
    "stages/lib/atomic.py",
    "stages/lib/cli.py",
    "stages/lib/runtime.py",
    "stages/lib/__init__.py",
}


def imported_lib_modules(path: Path, seen: set[str] | None = None) -> set[str]:
    """stages/lib/*.py files imported by `path`, directly or through other lib modules."""
    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages.lib"):
            names = [node.module] if node.module != "stages.lib" else [f"stages.lib.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("stages.lib.")]
        for name in names:
            rel = name.replace(".", "/") + ".py"
            if rel not in seen and (ROOT / rel).exists():
                seen.add(rel)
                imported_lib_modules(ROOT / rel, seen)
    return seen


@pytest.mark.parametrize("name", sorted(DVC))
def test_stage_runs_its_own_module(name: str):
    assert DVC[name]["cmd"] == f"python -m stages.{name}"
    assert (ROOT / "stages" / f"{name}.py").exists()


@pytest.mark.parametrize("name", sorted(DVC))
def test_params_in_dvc_yaml_are_exactly_the_stage_params(name: str):
    module = importlib.import_module(f"stages.{name}")
    declared = DVC[name].get("params", [])
    assert all(isinstance(key, str) for key in declared), "params come from params.yaml only"
    assert sorted(declared) == sorted(module.PARAMS)
    # Every declared name exists in params.yaml (a section or a leaf).
    keys = params.all_keys(params.load(ROOT / "params.yaml"))
    for key in declared:
        assert any(k == key or k.startswith(key + ".") for k in keys), key


@pytest.mark.parametrize("name", sorted(DVC))
def test_deps_cover_the_code_the_stage_runs(name: str):
    deps = set(DVC[name]["deps"])
    script = f"stages/{name}.py"
    code = {script} | imported_lib_modules(ROOT / script)
    assert code - PLUMBING <= deps, f"{name}: dvc.yaml deps miss {sorted(code - PLUMBING - deps)}"
    code_deps = {d for d in deps if d.endswith(".py")}
    assert code_deps <= code, f"{name}: dvc.yaml lists code the stage does not run: {sorted(code_deps - code)}"
    assert not (code_deps & PLUMBING)


def test_every_data_dep_is_written_by_a_stage():
    written = {
        o if isinstance(o, str) else next(iter(o))
        for stage in DVC.values()
        for o in stage.get("outs", []) + stage.get("metrics", [])
    }
    data_deps = {d for s in DVC.values() for d in s["deps"] if not d.endswith(".py") and d != "params.yaml"}
    assert data_deps <= written, f"deps that no stage writes: {sorted(data_deps - written)}"


def test_dvc_config_is_quiet():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "check_update = false" in config
