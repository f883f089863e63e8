from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib import training
from stages.lib.saving import save_model
from tests.conftest import ROOT


def tiny_data(n: int = 32, poison: bool = False) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    if poison:
        x[3, 0] = np.inf
    data = tf.data.Dataset.from_tensor_slices((x, y))
    return data.shuffle(n, seed=0).batch(8), data.batch(8)


def tiny_model(learning_rate: float = 0.05) -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="logits")(inputs))
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
    )
    return model


def fit(tmp_path: Path, first: int, last: int, key: str = "k", **kwargs) -> training.FitResult:
    train, val = kwargs.pop("data", tiny_data())
    return training.fit(
        kwargs.pop("build", tiny_model), train, val, epochs=range(first, last), train_count=32,
        work_dir=tmp_path / "ckpt", live_dir=tmp_path / "live", key=key, strategy=tf.distribute.get_strategy(),
    )  # fmt: skip


def logged_steps(live_dir: Path, name: str = "train/loss") -> list[int]:
    lines = (live_dir / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()[1:]
    return [int(line.split("\t")[0]) for line in lines]


def test_fit_logs_each_epoch_with_continuing_steps_and_cleans_up(tmp_path: Path):
    result = fit(tmp_path, first=3, last=6)
    assert result.epochs == 3
    assert set(result.final) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    logged = sorted(
        p.relative_to(tmp_path / "live" / "plots" / "metrics").as_posix() for p in (tmp_path / "live").rglob("*.tsv")
    )
    assert logged == ["eval/accuracy.tsv", "eval/loss.tsv", "train/accuracy.tsv", "train/loss.tsv"]
    for name in logged:
        assert logged_steps(tmp_path / "live", name.removesuffix(".tsv")) == [3, 4, 5]
    assert not (tmp_path / "ckpt").exists()  # the checkpoint goes once training completed
    assert result.images_per_second > 0 and result.seconds > 0
    assert not (tmp_path / "live" / "dvc.yaml").exists()  # dvclive never writes pipeline files


def test_matching_checkpoint_is_resumed(tmp_path: Path):
    fit(tmp_path, 0, 3)  # a finished run logged epochs 0, 1, 2
    # Leave what a run killed during epoch 3 of 4 would: epochs 0-1 checkpointed, epoch 2 logged but not
    # checkpointed. The resumed run must redo epoch 2, log it once, and not rebuild the model.
    model = tiny_model()
    model.fit(*tiny_data()[:1], epochs=1, verbose=0)  # gives the optimizer its state, as a real checkpoint has
    save_model(model, tmp_path / "ckpt" / training.CHECKPOINT)
    state = {"next_epoch": 2, "seconds": 5.0, "key": "k", "logs": {}}
    (tmp_path / "ckpt" / training.STATE).write_text(json.dumps(state))
    built = []
    result = fit(tmp_path, 0, 4, build=lambda: built.append(1) or tiny_model())
    assert built == []
    assert logged_steps(tmp_path / "live") == [0, 1, 2, 3]
    assert result.epochs == 4 and result.seconds > 5.0


def test_checkpoint_of_other_params_is_not_resumed(tmp_path: Path):
    save_model(tiny_model(), tmp_path / "ckpt" / training.CHECKPOINT)
    (tmp_path / "ckpt" / training.STATE).write_text(json.dumps({"next_epoch": 2, "seconds": 1.0, "key": "old"}))
    built = []
    result = fit(tmp_path, 0, 2, key="new", build=lambda: built.append(1) or tiny_model())
    assert built == [1]
    assert logged_steps(tmp_path / "live") == [0, 1] and result.epochs == 2


def test_non_finite_loss_stops_training(tmp_path: Path):
    with pytest.raises(training.TrainingError, match="loss became (nan|inf)"):
        fit(tmp_path, 0, 3, data=tiny_data(poison=True))


def test_fingerprint_is_stable_and_sensitive():
    a = training.fingerprint(params={"a": 1, "b": 2}, meta={"x": [1]})
    assert a == training.fingerprint(meta={"x": [1]}, params={"b": 2, "a": 1})
    assert a != training.fingerprint(params={"a": 1, "b": 3}, meta={"x": [1]})


def test_strategy_choices(monkeypatch: pytest.MonkeyPatch):
    default = tf.distribute.get_strategy()
    assert training.make_strategy("none") is default
    assert training.make_strategy("auto").num_replicas_in_sync == 1  # no GPUs here
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(training.TrainingError, match="TF_CONFIG"):
        training.make_strategy("multi_worker")


def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path: Path):
    # Logical devices must be configured before TensorFlow starts, hence a fresh interpreter.
    script = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "tests")!r})
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from stages.lib import training
        from test_training import tiny_data, tiny_model
        strategy = training.make_strategy("mirrored")
        train, val = tiny_data()
        result = training.fit(tiny_model, train, val, epochs=range(2), train_count=32,
            work_dir={str(tmp_path / "c")!r}, live_dir={str(tmp_path / "l")!r}, key="k", strategy=strategy)
        print("replicas", strategy.num_replicas_in_sync, "epochs", result.epochs, "loss", result.final["loss"])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    words = done.stdout.split()
    assert words[words.index("replicas") + 1] == "2" and words[words.index("epochs") + 1] == "2"
    assert np.isfinite(float(words[words.index("loss") + 1]))
