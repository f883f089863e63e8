from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from stages.lib import checkpoints, fitting, training
from stages.lib.checkpoints import STATE
from stages.lib.saving import save_model


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


def fit(tmp_path: Path, first: int, last: int, key: str = "k", **kwargs) -> fitting.FitResult:
    train, val = kwargs.pop("data", tiny_data())
    return fitting.fit(
        kwargs.pop("build", tiny_model), train, val, epochs=range(first, last), train_count=32,
        work_dir=tmp_path / "ckpt", live_dir=tmp_path / "live", key=key, strategy=tf.distribute.get_strategy(),
        **kwargs,
    )  # fmt: skip


def logged_steps(live_dir: Path, name: str = "train/loss") -> list[int]:
    lines = (live_dir / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()[1:]
    return [int(line.split("\t")[0]) for line in lines]


def test_fit_logs_each_epoch_with_continuing_steps_and_keeps_its_last_checkpoint(tmp_path: Path):
    result = fit(tmp_path, first=3, last=6)
    assert result.epochs == 3
    assert set(result.final) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    logged = sorted(
        p.relative_to(tmp_path / "live" / "plots" / "metrics").as_posix() for p in (tmp_path / "live").rglob("*.tsv")
    )
    assert logged == ["eval/accuracy.tsv", "eval/loss.tsv", "train/accuracy.tsv", "train/loss.tsv"]
    for name in logged:
        assert logged_steps(tmp_path / "live", name.removesuffix(".tsv")) == [3, 4, 5]
    # The last epoch's checkpoint stays for the caller to remove once it saved the model (TrainingStage.finish).
    assert checkpoints.read_state(tmp_path / "ckpt", "k")["next_epoch"] == 6
    assert result.images_per_second > 0 and result.seconds > 0
    assert not (tmp_path / "live" / "dvc.yaml").exists()  # dvclive never writes pipeline files


def test_matching_checkpoint_is_resumed(tmp_path: Path):
    fit(tmp_path, 0, 3)  # a finished run logged epochs 0, 1, 2
    # Leave what a run killed during epoch 3 of 4 would: epochs 0-1 checkpointed, epoch 2 logged but not
    # checkpointed. The resumed run must redo epoch 2, log it once, and go on from the checkpoint's model.
    model = tiny_model(learning_rate=0.0)  # the checkpoint's optimizer, and so the resumed one, changes nothing
    model.set_weights([np.full((4, 1), 0.25, np.float32), np.full((1,), -1.0, np.float32)])
    model.fit(*tiny_data()[:1], epochs=1, verbose=0)  # 4 steps: the optimizer's state, as a real checkpoint has
    save_model(model, tmp_path / "ckpt" / "epoch-2.keras")
    state = {"next_epoch": 2, "seconds": 5.0, "key": "k", "logs": {}, "model": "epoch-2.keras"}
    (tmp_path / "ckpt" / STATE).write_text(json.dumps(state))
    result = fit(tmp_path, 0, 4, build=tiny_model)  # a fresh model, at a rate of 0.05: the checkpoint's replace both
    assert logged_steps(tmp_path / "live") == [0, 1, 2, 3]
    assert result.epochs == 4 and result.seconds > 5.0
    assert int(result.model.optimizer.iterations) == 4 + 2 * 4  # the checkpoint's steps, then epochs 2 and 3
    assert [w.tolist() for w in result.model.get_weights()] == [[[0.25]] * 4, [-1.0]]


def test_checkpoint_of_other_params_is_not_resumed(tmp_path: Path):
    save_model(tiny_model(), tmp_path / "ckpt" / "epoch-2.keras")
    state = {"next_epoch": 2, "seconds": 1.0, "key": "old", "model": "epoch-2.keras"}
    (tmp_path / "ckpt" / STATE).write_text(json.dumps(state))
    built = []
    result = fit(tmp_path, 0, 2, key="new", build=lambda: built.append(1) or tiny_model())
    assert built == [1]
    assert logged_steps(tmp_path / "live") == [0, 1] and result.epochs == 2


def test_non_finite_loss_stops_training(tmp_path: Path):
    with pytest.raises(fitting.TrainingError, match="loss became (nan|inf)"):
        fit(tmp_path, 0, 3, data=tiny_data(poison=True))


def against_the_training_labels() -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Val labels opposite to the train labels: the better the model fits, the worse val gets, from epoch 1 on."""
    train, val = tiny_data()
    return train, val.map(lambda x, y: (x, 1 - y))


def test_keep_best_returns_the_best_epoch_and_patience_stops_training(tmp_path: Path):
    result = fit(tmp_path, 0, 10, data=against_the_training_labels(), monitor="val_loss", patience=2)
    assert result.best_epoch == 1 and result.epochs == 3  # epoch 1 was best; 2 and 3 were not: stopped
    assert logged_steps(tmp_path / "live", "eval/loss") == [0, 1, 2]
    _, val = against_the_training_labels()
    val_loss = result.model.evaluate(val, verbose=0, return_dict=True)["loss"]
    assert val_loss == pytest.approx(result.final["val_loss"], rel=1e-5)  # the model is epoch 1's, as its logs


def test_keep_best_without_patience_trains_every_epoch(tmp_path: Path):
    result = fit(tmp_path, 0, 4, data=against_the_training_labels(), monitor="val_accuracy")
    assert result.epochs == 4
    rows = (tmp_path / "live" / "plots" / "metrics" / "eval" / "accuracy.tsv").read_text().splitlines()[1:]
    accuracies = [float(row.split("\t")[1]) for row in rows]
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1  # the first epoch of the highest logged one


def test_a_stage_killed_after_early_stopping_does_not_train_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(fitting.shutil, "rmtree", lambda *args, **kwargs: None)  # as if killed before cleaning up
    first = fit(tmp_path, 0, 10, data=against_the_training_labels(), monitor="val_loss", patience=2)
    monkeypatch.undo()
    again = fit(tmp_path, 0, 10, data=against_the_training_labels(), monitor="val_loss", patience=2)
    assert (again.best_epoch, again.epochs, again.final) == (first.best_epoch, first.epochs, first.final)
    assert logged_steps(tmp_path / "live", "eval/loss") == [0, 1, 2]
    assert all((a == b).all() for a, b in zip(first.model.get_weights(), again.model.get_weights()))


def test_a_learning_rate_schedule_continues_after_a_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def scheduled() -> keras.Model:  # 4 steps per epoch: 4 of warmup, then 12 of cosine decay
        return tiny_model(training.learning_rate(0.05, "cosine", 1, epochs=4, steps_per_epoch=4))

    monkeypatch.setattr(fitting.shutil, "rmtree", lambda *args, **kwargs: None)  # killed after 2 epochs
    fit(tmp_path, 0, 2, build=scheduled)
    monkeypatch.undo()
    resumed = fit(tmp_path, 0, 4, build=scheduled)
    optimizer = resumed.model.optimizer
    assert int(optimizer.iterations) == 16  # the step count, and so the schedule, went on from the checkpoint
    assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-7)


def test_a_kill_between_a_model_and_its_state_resumes_a_model_and_state_of_one_epoch(tmp_path: Path, monkeypatch):
    """kill -9 (nothing Python can defer) after epoch 2's model is written and before its state is: the checkpoint a
    re-run resumes from must still be epoch 1's model with epoch 1's state, not epoch 2's model as epoch 1."""
    monkeypatch.setattr(fitting.shutil, "rmtree", lambda *args, **kwargs: None)  # killed after epoch 1
    fit(tmp_path, 0, 1, data=against_the_training_labels(), monitor="val_loss")
    state = checkpoints.read_state(tmp_path / "ckpt", "k")
    after_one = keras.saving.load_model(checkpoints.model_path(tmp_path / "ckpt", state)).get_weights()
    write_json = checkpoints.files.write_json

    def killed_before_the_state(path, data):
        if path.name == STATE and data["next_epoch"] == 2:
            raise SystemExit(-9)
        write_json(path, data)

    monkeypatch.setattr(checkpoints.files, "write_json", killed_before_the_state)
    with pytest.raises(SystemExit):
        fit(tmp_path, 0, 3, data=against_the_training_labels(), monitor="val_loss")
    state = checkpoints.read_state(tmp_path / "ckpt", "k")
    assert state["next_epoch"] == 1
    resumed = keras.saving.load_model(checkpoints.model_path(tmp_path / "ckpt", state)).get_weights()
    assert all((a == b).all() for a, b in zip(after_one, resumed))
    assert state["best"]["epoch"] == 0 and (tmp_path / "ckpt" / state["best"]["file"]).is_file()
    monkeypatch.undo()
    assert fit(tmp_path, 0, 3, data=against_the_training_labels(), monitor="val_loss").epochs == 3
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best-1.weights.h5", "epoch-3.keras", STATE]
