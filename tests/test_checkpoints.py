from __future__ import annotations

import json
from pathlib import Path

from stages.lib import checkpoints
from stages.lib.checkpoints import STATE


def test_fingerprint_is_stable_and_sensitive():
    a = checkpoints.fingerprint(params={"a": 1, "b": 2}, meta={"x": [1]})
    assert a == checkpoints.fingerprint(meta={"x": [1]}, params={"b": 2, "a": 1})
    assert a != checkpoints.fingerprint(params={"a": 1, "b": 3}, meta={"x": [1]})


def test_a_checkpoint_is_resumed_only_whole_and_of_the_same_key(tmp_path: Path):
    state = {"next_epoch": 2, "seconds": 1.0, "key": "k", "model": "epoch-2.keras"}
    (tmp_path / STATE).write_text(json.dumps(state))
    assert checkpoints.read_state(tmp_path, "k") is None  # the model it names is not there
    (tmp_path / "epoch-2.keras").write_bytes(b"model")
    assert checkpoints.read_state(tmp_path, "k") == state
    assert checkpoints.model_path(tmp_path, state) == tmp_path / "epoch-2.keras"
    best = {"epoch": 0, "value": 0.5, "logs": {}, "file": "best-1.weights.h5"}
    (tmp_path / STATE).write_text(json.dumps(state | {"best": best}))
    assert checkpoints.read_state(tmp_path, "k") is None  # nor the best weights it names
    (tmp_path / "best-1.weights.h5").write_bytes(b"weights")
    assert checkpoints.read_state(tmp_path, "k") == state | {"best": best}
    assert checkpoints.read_state(tmp_path, "other params") is None
    (tmp_path / STATE).write_text(json.dumps(state)[:-5])  # cut short
    assert checkpoints.read_state(tmp_path, "k") is None
    assert checkpoints.read_state(tmp_path / "none", "k") is None


def test_improved_is_downwards_for_a_loss_and_upwards_for_a_metric():
    assert checkpoints.improved("val_loss", 0.4, 0.5) and not checkpoints.improved("val_loss", 0.5, 0.4)
    assert checkpoints.improved("val_accuracy", 0.6, 0.5) and not checkpoints.improved("val_accuracy", 0.5, 0.5)
