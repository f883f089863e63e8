"""dvc.yaml agrees with the code: each stage's command passes every path it reads and writes, and those paths
are its deps and outs; its params are exactly its PARAMS; its deps cover the code it runs, and no more.

That the stages read exactly their PARAMS at run time (no fewer) is checked in each stage's own test,
through the `read` set of the params view the stage's main() returns.
"""

from __future__ import annotations

import ast
import importlib
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from stages.lib import cli, corrections, params, stage_params
from tests.conftest import ROOT, dvc_args

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# Code that moves bytes without deciding them; dvc.yaml leaves it out so that editing it (a new params section
# for a later stage, the download retries, how start-up lines are filtered) does not invalidate every output.
PLUMBING = {
    "stages/lib/__init__.py",
    "stages/lib/params.py",
    "stages/lib/params_file.py",
    "stages/lib/stage_params.py",
    "stages/lib/files.py",
    "stages/lib/cli.py",
    "stages/lib/errors.py",
    "stages/lib/lifecycle.py",
    "stages/lib/cluster.py",
    "stages/lib/runtime.py",
    "stages/lib/fetch.py",
}
# Command arguments that are paths but no DVC output: scratch the stage owns (kept between runs on purpose).
SCRATCH = {
    "data/downloads",
    "models/checkpoints/baseline",
    "models/checkpoints/transfer",
    "models/checkpoints/finetune",
}
TRAINING = ("baseline", "transfer", "finetune")
SHIPPED = {"pretrained"}  # inputs the project ships in git, named by a param rather than by a stage's command
EDITED = {str(corrections.FILE)}  # inputs a person edits and commits: their decisions about images
BROUGHT = {"archives"}  # the user's local sources: download depends on the whole folder (docs/datasets.md)


def imported_lib_modules(path: Path, seen: set[str] | None = None) -> set[str]:
    """stages/lib/*.py files imported by `path`, directly or through other lib modules (not through plumbing,
    whose imports do not decide a stage's output)."""
    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages.lib"):
            names = [node.module] if node.module != "stages.lib" else [f"stages.lib.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("stages.lib.")]
        for name in names:
            module = name.replace(".", "/")
            rel = f"{module}/__init__.py" if (ROOT / module).is_dir() else f"{module}.py"
            if rel not in seen and (ROOT / rel).exists():
                seen.add(rel)
                if rel not in PLUMBING:
                    imported_lib_modules(ROOT / rel, seen)
    return seen


def code_deps(name: str) -> set[str]:
    return {d for d in DVC[name]["deps"] if d.endswith(".py")}


def outputs(stage: dict) -> set[str]:
    return {o if isinstance(o, str) else next(iter(o)) for o in stage.get("outs", []) + stage.get("metrics", [])}


def command_paths(name: str) -> list[str]:
    """The values of the stage command's --options (every option of a stage takes a path)."""
    words = shlex.split(DVC[name]["cmd"])
    assert words[:3] == ["python", "-m", f"stages.{name}"]
    options = words[3:]
    assert all(o.startswith("--") for o in options[::2]) and len(options) % 2 == 0, options
    return options[1::2]


@pytest.mark.parametrize("name", sorted(DVC))
def test_stage_runs_its_own_module(name: str):
    assert (ROOT / "stages" / f"{name}.py").exists()
    assert command_paths(name)  # and the command is `python -m stages.<name> --option path ...`


@pytest.mark.parametrize("name", sorted(DVC))
def test_every_path_of_the_command_is_a_dep_or_an_out_and_back(name: str):
    """A path changed in the command but not in deps/outs (or the other way round) fails here."""
    stage, paths = DVC[name], set(command_paths(name))
    declared = {d for d in stage["deps"] if not d.endswith(".py") and d not in {"params.yaml", *SHIPPED}}
    declared |= outputs(stage)

    def covered(path: str) -> bool:  # a folder argument covers the files in it that the stage declares
        return any(d == path or d.startswith(path + "/") for d in declared)

    assert all(covered(p) or p in SCRATCH for p in paths), sorted(p for p in paths if not covered(p))
    assert all(any(d == p or d.startswith(p + "/") for p in paths) for d in declared), sorted(declared)


@pytest.mark.parametrize("name", sorted(DVC))
def test_the_stage_checks_that_it_can_write_each_of_its_outs_before_it_starts(name: str, monkeypatch):
    checked: list[str] = []
    monkeypatch.setattr(cli, "writable", lambda path: checked.append(str(path)))

    def started(*args, **kwargs):
        raise StopIteration  # the stage's work would begin: the checks are done

    monkeypatch.setattr(stage_params, "for_stage", started)
    with pytest.raises(StopIteration):
        importlib.import_module(f"stages.{name}").main(dvc_args(name))
    wanted = outputs(DVC[name]) | (set(command_paths(name)) & SCRATCH)
    # A folder argument (evaluate's metrics/test) is checked once for the outputs it holds.
    assert all(any(w == c or w.startswith(c + "/") for c in checked) for w in wanted), (checked, wanted)
    assert all(any(w == c or w.startswith(c + "/") for w in wanted) for c in checked), (checked, wanted)


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
    script = f"stages/{name}.py"
    code = ({script} | imported_lib_modules(ROOT / script)) - PLUMBING
    assert code <= set(DVC[name]["deps"]), f"{name}: dvc.yaml deps miss {sorted(code - set(DVC[name]['deps']))}"
    assert code_deps(name) <= code, f"{name}: dvc.yaml lists code the stage does not run: {code_deps(name) - code}"


@pytest.mark.parametrize("name", TRAINING)
def test_training_does_not_depend_on_how_data_is_fetched(name: str):
    """Editing the download retries or the archive checks must not re-train a model."""
    fetching = {
        "stages/lib/fetch.py",
        "stages/lib/archive.py",
        "stages/lib/file_names.py",
        "stages/lib/sample/__init__.py",
        "stages/lib/sample/drawing.py",
        "stages/download.py",
    }
    assert not code_deps(name) & fetching


def test_export_does_not_depend_on_evaluation_metrics():
    assert "stages/lib/scoring.py" not in code_deps("export")


def test_every_data_dep_is_written_by_a_stage():
    written = set().union(*(outputs(stage) for stage in DVC.values()))
    data_deps = {
        d
        for s in DVC.values()
        for d in s["deps"]
        if not d.endswith(".py") and d not in {"params.yaml", *SHIPPED, *EDITED, *BROUGHT}
    }
    assert data_deps <= written, f"deps that no stage writes: {sorted(data_deps - written)}"


def test_corrections_csv_ships_empty_and_is_what_split_reads():
    """A fresh clone has no decisions yet: corrections.csv is its header alone, the file the split command names."""
    assert corrections.read(ROOT / corrections.FILE) == []
    assert (ROOT / corrections.FILE).read_text() == ",".join(corrections.COLUMNS) + "\n"
    assert f"--corrections {corrections.FILE}" in DVC["split"]["cmd"] and str(corrections.FILE) in DVC["split"]["deps"]


def test_local_sources_are_a_dependency_of_download_and_of_nothing_else():
    """Issue 30: a local data.source was a param, not a dependency, so a re-packed archive re-ran nothing. DVC hashes
    archives/, which the project ships (its README.md: DVC refuses a missing dependency)."""
    assert [name for name, stage in DVC.items() if BROUGHT & set(stage["deps"])] == ["download"]
    assert "--archives archives" in DVC["download"]["cmd"]
    assert (ROOT / "archives" / "README.md").is_file()
    tracked = subprocess.run(
        ["git", "check-ignore", "-q", "archives/README.md"], cwd=ROOT, capture_output=True, check=False
    )
    assert tracked.returncode == 1  # not ignored: a fresh clone has the folder


def test_predict_defaults_are_the_pipeline_outputs():
    """imagefolder-predict, the one command users run without dvc, defaults to what the pipeline writes."""
    from stages.lib import prediction as predict
    from stages.lib import serving

    written = set().union(*(outputs(stage) for stage in DVC.values()))
    export = predict.DEFAULT_MODEL.parent
    assert str(export) in written and predict.DEFAULT_MODEL.name == serving.KERAS_FILE  # in the export stage's out
    assert predict.LABELS_FILE == serving.LABELS_FILE and str(predict.DEFAULT_RECORDS) in written


def test_the_model_registry_s_artifact_is_the_export_stage_s_output():
    """`dvc artifacts get <repository> image-classifier` fetches what export writes and predict runs."""
    from stages.lib import prediction as predict

    artifacts = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    assert list(artifacts) == ["image-classifier"]
    artifact = artifacts["image-classifier"]
    assert artifact["type"] == "model" and artifact["desc"] and artifact["labels"]
    assert artifact["path"] in outputs(DVC["export"]) and artifact["path"] == str(predict.DEFAULT_MODEL.parent)


def test_dvc_config_is_quiet():
    config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "check_update = false" in config


@pytest.mark.parametrize("group", [("baseline",), ("transfer", "finetune")])
def test_every_logged_metric_is_plotted_train_beside_val(group: tuple[str, ...]):
    """heads.METRICS and the loss: dvclive logs them per stage and split; dvc.yaml draws each on one chart with
    train and val (transfer and fine-tuning together, as one continued run)."""
    from stages.lib import heads

    charts = [next(iter(plot.values()))["y"] for plot in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]]
    for name in ("loss", *heads.METRICS):
        wanted = {f"dvclive/{s}/plots/metrics/{split}/{name}.tsv" for s in group for split in ("train", "eval")}
        assert any(isinstance(y, dict) and wanted <= set(y) for y in charts), f"no chart of {name} for {group}"
