"""End to end through real `dvc`: the demo script on tiny sample data, then the no-op and re-run checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("e2e") / "demo"
    sh(
        "bash",
        str(ROOT / "scripts" / "demo.sh"),
        str(workspace),
        "encode",
        "-S",
        "data.sample_train_per_class=12",
        "-S",
        "data.sample_validation_per_class=10",
        "-S",
        "encode.image_size=64",
        cwd=ROOT,
    )
    return workspace


def test_demo_runs_the_data_stages_through_dvc(demo: Path):
    lock = (demo / "dvc.lock").read_text()
    assert all(f"  {stage}:" in lock for stage in ("download", "split", "encode"))
    metrics = json.loads((demo / "metrics" / "data.json").read_text())
    # 12 + 10 usable images per class, minus the test share; the sample's leaked copy is removed.
    assert metrics["train.total"] == 24 and metrics["val.total"] + metrics["test.total"] == 20
    assert metrics["skipped.total"] == 3 and metrics["duplicates_removed.val"] + metrics["duplicates_removed.test"] == 1
    meta = json.loads((demo / "data" / "tfrecords" / "meta.json").read_text())
    assert meta["image_size"] == 64 and meta["splits"]["train"]["count"] == 24


def test_second_repro_changes_nothing(demo: Path):
    out = sh("dvc", "repro", "encode", cwd=demo)
    assert "Data and pipelines are up to date." in out
    assert "Running stage" not in out


def test_forced_rerun_of_download_leaves_downstream_valid(demo: Path):
    before = (demo / "dvc.lock").read_text()
    out = sh("dvc", "repro", "-f", "download", cwd=demo)
    assert "Running stage 'download'" in out
    assert (demo / "dvc.lock").read_text() == before  # identical bytes, identical hashes
    out = sh("dvc", "repro", "encode", cwd=demo)
    assert "Running stage" not in out


def test_param_change_reruns_only_affected_stages(demo: Path):
    out = sh("dvc", "exp", "run", "encode", "-S", "encode.examples_per_shard=7", cwd=demo)
    assert "Running stage 'encode'" in out
    assert "Running stage 'split'" not in out and "Running stage 'download'" not in out
    assert len(json.loads((demo / "data" / "tfrecords" / "meta.json").read_text())["splits"]["train"]["shards"]) == 4
