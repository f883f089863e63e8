"""The demo's shipped base: pretrained/ holds the weights scripts/pretrain_base.py wrote and its description, which
match byte for byte; the source task never saw the demo's classes; the script is deterministic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stages.lib import files, models
from stages.lib.sample.drawing import ANIMALS
from tests.conftest import ROOT

WEIGHTS = ROOT / "pretrained" / "mobilenet_v2_animals.weights.h5"
ABOUT = json.loads(WEIGHTS.with_suffix("").with_suffix(".json").read_text())


def test_the_description_is_of_these_very_weights():
    assert ABOUT["sha256"] == files.sha256_file(WEIGHTS) and ABOUT["weights"] == WEIGHTS.name
    assert ABOUT["held_out_accuracy"] > 0.9  # the source task was learnt, in inference mode


def test_the_source_task_never_saw_the_demo_s_classes():
    task = ABOUT["source_task"]
    assert set(task["excluded_target_classes"]) == {"cats", "dogs"}
    assert set(task["classes"]) == {a.name for a in ANIMALS} - {"cats", "dogs"}


def test_the_weights_load_into_the_registry_s_base_at_the_demo_size():
    base = models.build_base("mobilenet_v2", 96, str(WEIGHTS))
    assert len(base.layers) == 154 and base.count_params() == 2_257_984


@pytest.mark.slow
def test_pretraining_is_deterministic(tmp_path: Path):
    argv = ["--images-per-class", "12", "--epochs", "1", "--size", "32", "--batch-size", "16"]
    outs = [tmp_path / run / "base.weights.h5" for run in ("a", "b")]
    runs = [  # at once: two processes of the same work, so order or a shared machine cannot matter
        subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "pretrain_base.py"), "--out", str(out), *argv],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for out in outs
    ]
    for done in runs:
        _, stderr = done.communicate(timeout=600)
        assert done.returncode == 0, stderr[-2000:]
    digests = [json.loads(out.with_suffix("").with_suffix(".json").read_text())["sha256"] for out in outs]
    assert digests[0] == digests[1]
