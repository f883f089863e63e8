"""Keras' and TensorFlow's private names, each checked where this project relies on it: a canary per name, red on
an upgrade that moves it or changes its call signature."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

from stages.lib import internals
from stages.lib.errors import PipelineError
from tests.conftest import ROOT


@pytest.mark.parametrize("private", internals.PRIVATE, ids=lambda p: p.attribute)
def test_each_private_name_is_there_with_the_signature_relied_on(private):
    found = internals.find(private)
    assert callable(found)
    try:
        assert tuple(inspect.signature(found).parameters) == private.parameters
    except ValueError:  # a C++ function without a signature: found by its name
        assert private.module.startswith("tensorflow.")


def test_a_name_gone_or_changed_is_one_line_naming_it():
    gone = internals.Private("keras.src.backend.tensorflow.trainer", "no_such_function", ())
    with pytest.raises(
        PipelineError,
        match=r"^keras\.src\.backend\.tensorflow\.trainer\.no_such_function is gone in "
        r"Keras 3\.[\d.]+ / TensorFlow 2\.[\d.]+; this project relies on it",
    ):
        internals.find(gone)
    changed = internals.Private("keras.src.random.seed_generator", "SeedGenerator.next", ("self",))
    with pytest.raises(PipelineError, match=r"SeedGenerator\.next takes \(self, ordered\), not \(self\) in Keras"):
        internals.find(changed)


def test_the_private_patches_are_installed_only_by_the_strategies_that_need_them():
    from keras.src.backend.tensorflow import trainer
    from keras.src.random.seed_generator import SeedGenerator

    from stages.lib import distribution

    distribution.make_strategy("none", 600)
    distribution.make_strategy("auto", 600)  # one CPU, no GPU: a single replica
    assert not getattr(trainer.reduce_per_replica, "multi_worker_fix", False)
    assert not getattr(SeedGenerator.next, "per_replica", False)


@pytest.mark.slow
@pytest.mark.parametrize("switch", ["0", "1"])
def test_onednn_enabled_reads_tensorflow_s_own_switch(switch):
    script = "import stages; from stages.lib import internals; print(internals.onednn_enabled())"
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": switch}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == str(switch == "1")
