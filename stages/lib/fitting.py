"""The fit loop of a training stage: `fit` is `model.fit`, resumable and logged by dvclive, with these callbacks, in
this order at the end of each epoch:
- `ValidateWith` (when val is a function): the epoch's val_<name> logs from features computed once;
- `MainOutputLogs`: a model with auxiliary outputs (GoogLeNet) logs its main output under the plain names;
- `StopOnNonFinite`: a NaN or infinite loss raises a TrainingError at once, so no model and no checkpoint is
  written. (Keras' TerminateOnNaN only sets `stop_training`: the epoch still ends, the checkpoint would save the
  broken weights, and a re-run would resume from them.)
- `dvclive.keras.DVCLiveCallback`: every logged value, per epoch, as dvclive/<stage>/plots/metrics/{train,eval}/
  <name>.tsv with the epoch as the step; the step starts at `epochs.start`, so fine-tuning continues transfer's
  epoch numbers;
- `checkpoints.Checkpoint`: the best epoch's weights, the model and its state, so that a killed stage resumes; the
  logs of epochs after the checkpoint are dropped first.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from stages.lib import distribution, heads
from stages.lib.checkpoints import Checkpoint, best_weights_path, drop_logged_steps_from, model_path, read_state
from stages.lib.errors import PipelineError


class TrainingError(PipelineError):
    pass


@dataclass(frozen=True)
class FitResult:
    model: keras.Model
    final: dict[str, float]  # the last epoch's logs: loss, val_loss and heads.METRICS, with and without val_
    epochs: int  # epochs of this stage trained, including any run before a resume (fewer if stopped early)
    best_epoch: int | None  # with train.keep_best: the epoch (1-based, in the stage's numbering) `model` is from
    seconds: float  # wall time of training, including any run before a resume
    images_per_second: float  # training throughput of this process


class MainOutputLogs(keras.callbacks.Callback):
    """A model with auxiliary outputs logs its main output (heads.MAIN_OUTPUT) as logit_loss, val_logit_accuracy,
    ... and the weighted sum of all losses as loss; replace the epoch's logs by the main output's, under the plain
    names every other model logs. It edits the logs dict Keras passes on, so it must come before dvclive and the
    checkpoint."""

    def on_epoch_end(self, epoch, logs=None):
        prefix = f"{heads.MAIN_OUTPUT}_"
        if logs is not None and any(key.startswith(prefix) for key in logs):
            main = {k.replace(prefix, "", 1): v for k, v in logs.items() if k.startswith((prefix, f"val_{prefix}"))}
            logs.clear()
            logs.update(main)


class StopOnNonFinite(keras.callbacks.Callback):
    epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(
                f"the training loss became {float(loss)} in epoch {self.epoch + 1}, batch {batch + 1}; "
                "no model was written. "
                "Lower the learning rate or check the input data."
            )

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            if "loss" in name and not math.isfinite(float(value)):
                raise TrainingError(f"{name} became {float(value)} in epoch {epoch + 1}; no model was written")


class ValidateWith(keras.callbacks.Callback):
    """Sets the epoch's val_<name> logs from `validate(model)` instead of Keras' validation pass (see `fit`): first
    in `callbacks`, so that dvclive, the checkpoint's keep_best and the progress line all see them."""

    def __init__(self, validate: Callable[[keras.Model], dict[str, float]]):
        super().__init__()
        self.validate = validate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.validate(self.model))


def _live(live_dir: Path, resume: bool, chief: bool):
    """dvclive's logger for the process that writes the outputs; nothing for another worker."""
    if not chief:
        return contextlib.nullcontext()
    return Live(str(live_dir), resume=resume, dvcyaml=False, save_dvc_exp=False, report=None)


def fit(
    build: Callable[[], keras.Model],
    train: tf.data.Dataset,
    val: tf.data.Dataset | Callable[[keras.Model], dict[str, float]],
    *,
    epochs: range,
    train_count: int,
    work_dir: Path,
    live_dir: Path,
    key: str,
    strategy: tf.distribute.Strategy,
    monitor: str | None = None,
    patience: int = 0,
) -> FitResult:
    """Train the epochs in `epochs` (0-based; fine-tuning's continue transfer's), resuming if possible.

    `build()` returns a compiled model; it is called in the strategy's scope, and a checkpoint with the same `key`
    in `work_dir` is loaded into it (weights and optimizer state). The checkpoint stays when training completes: the
    caller removes it once it has saved the model (TrainingStage.finish), so that a kill in between trains nothing
    again. `val` is a dataset, or a function giving the model's val_<name> logs another way
    (TrainingStage.validation_on_features). With `monitor` (a val metric), the model returned has the weights of the
    epoch that was best by it, and `patience` > 0 stops training after that many epochs without a better one.
    """
    work_dir, live_dir, chief = Path(work_dir), Path(live_dir), distribution.writes_outputs(strategy)
    distribution.same_on_every_worker(strategy, key, "params or inputs (params.yaml, data/, models/)")
    # Several workers resume from the chief's checkpoint: it alone writes one (see distribution).
    state = distribution.chief_value(strategy, read_state(work_dir, key) if chief else None)
    if chief and not state:
        shutil.rmtree(work_dir, ignore_errors=True)
    with strategy.scope():
        model = build()  # on every worker alike: under several, creating variables is a collective
        if state and model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # so that its state is loaded too
    if state:
        if chief:  # out of the scope: loading makes variables of its own, which are no collective then
            model.load_weights(model_path(work_dir, state))
        distribution.weights_from_chief(strategy, model)
        where = work_dir if chief else "the chief's checkpoint folder"
        print(f"resuming from the checkpoint of epoch {state['next_epoch']} in {where}")
    start, seconds_before = (state["next_epoch"], state["seconds"]) if state else (epochs.start, 0.0)
    if chief:
        work_dir.mkdir(parents=True, exist_ok=True)
    resume = bool(state) and live_dir.is_dir()
    if resume and chief:
        drop_logged_steps_from(live_dir, start)
    checkpoint = Checkpoint(work_dir, key, seconds_before, state, epochs, monitor, patience, writes=chief)
    validate = [ValidateWith(val)] if callable(val) else []
    with _live(live_dir, resume, chief) as live:
        logging = [DVCLiveCallback(live=live)] if live else []  # only the chief logs
        if live:
            live.step = start
        if start < epochs.stop and not checkpoint.stopped:
            model.fit(
                distribution.shard_by_batch(train, strategy),
                validation_data=None if validate else distribution.shard_by_batch(val, strategy),
                initial_epoch=start,
                shuffle=False,  # the datasets shuffle themselves, seeded
                epochs=epochs.stop,
                callbacks=[*validate, MainOutputLogs(), StopOnNonFinite(), *logging, checkpoint],
                verbose=1 if sys.stdout.isatty() else 2,  # a progress bar on a terminal, one line per epoch in CI logs
            )
    run_seconds = time.perf_counter() - checkpoint.started
    trained_until = checkpoint.next_epoch or start
    final, best_epoch = checkpoint.last_logs, None
    if monitor and checkpoint.best:
        if chief:  # another worker's model is not saved
            model.load_weights(best_weights_path(work_dir, checkpoint.best))
        final, best_epoch = checkpoint.best["logs"], checkpoint.best["epoch"] + 1
    return FitResult(
        model=model,
        final=final,
        epochs=trained_until - epochs.start,
        best_epoch=best_epoch,
        seconds=seconds_before + run_seconds,
        images_per_second=train_count * (trained_until - start) / run_seconds if run_seconds > 0 else 0.0,
    )
