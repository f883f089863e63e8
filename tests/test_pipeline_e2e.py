"""End to end through real `dvc`: the demo script on tiny sample data, then no-op and targeted re-runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

TINY = {
    "data.sample_train_per_class": 12,
    "data.sample_validation_per_class": 10,
    "encode.image_size": 32,
    "baseline.image_size": 32,
    "baseline.epochs": 2,
    "model.image_size": 32,
    "transfer.epochs": 2,
    "transfer.batch_size": 8,
    "finetune.epochs": 2,
    "finetune.batch_size": 8,
}


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("e2e") / "demo"
    overrides = [arg for key, value in TINY.items() for arg in ("-S", f"{key}={value}")]
    out = sh("bash", str(ROOT / "scripts" / "demo.sh"), str(workspace), *overrides, cwd=ROOT)
    assert ran(out) == set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])  # every stage
    return workspace


def test_demo_runs_every_stage_through_dvc(demo: Path):
    metrics = json.loads((demo / "metrics" / "data.json").read_text())
    # 12 + 10 usable images per class, minus the test share; the sample's leaked copy is removed.
    assert metrics["train.total"] == 24 and metrics["val.total"] + metrics["test.total"] == 20
    assert metrics["skipped.total"] == 3 and metrics["duplicates_removed.val"] + metrics["duplicates_removed.test"] == 1
    for stage in ("baseline", "transfer", "finetune"):
        assert (demo / "models" / f"{stage}.keras").is_file()
        assert json.loads((demo / "metrics" / f"{stage}.json").read_text())["epochs"] == 2
    shown = sh("dvc", "metrics", "show", "--json", cwd=demo)
    assert "metrics/finetune.json" in shown and "metrics/data.json" in shown
    evaluation = json.loads((demo / "metrics" / "eval.json").read_text())
    assert all(evaluation[f"{m}.test_images"] == metrics["test.total"] for m in ("baseline", "transfer", "finetune"))
    plots = sh("dvc", "plots", "show", "--json", cwd=demo)
    assert "roc" in plots and "dvclive/finetune/plots/metrics" in plots
    report = (demo / "reports" / "report.md").read_text()
    assert "0.9765" in report  # the reference figure, beside this run's numbers


def test_second_repro_changes_nothing(demo: Path):
    out = sh("dvc", "repro", cwd=demo)
    assert "Data and pipelines are up to date." in out
    assert ran(out) == set()


def test_forced_rerun_of_download_leaves_downstream_valid(demo: Path):
    before = (demo / "dvc.lock").read_text()
    out = sh("dvc", "repro", "-f", "download", cwd=demo)
    assert ran(out) == {"download"}
    assert (demo / "dvc.lock").read_text() == before  # identical bytes, identical hashes
    assert ran(sh("dvc", "repro", cwd=demo)) == set()


def test_fine_tune_at_change_reruns_only_finetune(demo: Path):
    out = sh("dvc", "exp", "run", "-S", "model.fine_tune_at=120", cwd=demo)
    assert ran(out) == {"finetune", "evaluate", "export", "report"}  # and nothing upstream
    metrics = json.loads((demo / "metrics" / "finetune.json").read_text())
    assert metrics["params.trainable"] < 1_862_721  # fewer layers unfrozen than at 100
    steps = (demo / "dvclive" / "finetune" / "plots" / "metrics" / "loss.tsv").read_text().split()[2::2]
    assert steps == ["2", "3"]  # epochs continue after the transfer stage's two


def test_encode_param_change_reruns_encode_and_what_follows(demo: Path):
    out = sh("dvc", "exp", "run", "-S", "encode.examples_per_shard=7", cwd=demo)
    assert "download" not in ran(out) and "split" not in ran(out)
    assert "encode" in ran(out)
    meta = json.loads((demo / "data" / "tfrecords" / "meta.json").read_text())
    assert len(meta["splits"]["train"]["shards"]) == 4
