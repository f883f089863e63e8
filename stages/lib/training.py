"""What the baseline, transfer and finetune stages share: their paths, seeds, strategy, input, a resumable `fit`
logged by dvclive, and the summary in metrics/<stage>.json.

`fit` is `model.fit` with these callbacks, in this order at the end of each epoch:
- `MainOutputLogs`: a model with auxiliary outputs (GoogLeNet) logs its main output under the plain names;
- `StopOnNonFinite`: a NaN or infinite loss raises a TrainingError at once, so no model and no checkpoint is
  written. (Keras' TerminateOnNaN only sets `stop_training`: the epoch still ends, the checkpoint below would
  save the broken weights, and a re-run would resume from them.)
- `dvclive.keras.DVCLiveCallback`: every logged value, per epoch, as dvclive/<stage>/plots/metrics/{train,eval}/
  <name>.tsv with the epoch as the step; the step starts at `epochs.start`, so fine-tuning continues transfer's
  epoch numbers;
- `Checkpoint`: with train.keep_best, first the weights of the best epoch so far (`best.weights.h5`) and, with
  train.patience, early stopping; then the model (with its optimizer state) and a state file, written atomically,
  so a stage killed
  mid-training (even kill -9) resumes from its last finished epoch. (Keras' BackupAndRestore writes its weights
  and epoch counter in place, one after the other: a kill between or during them leaves a truncated file or an
  epoch trained twice; it also cannot tell a checkpoint of other params from its own, and keeps the resumed
  epoch private, which the log trimming below needs.) A checkpoint is resumed only if its fingerprint (params
  and inputs) matches; the logs of epochs after it are dropped first.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback
from keras.optimizers.schedules import LearningRateSchedule

from stages.lib import chance, cli, distribution, files, heads, records, runtime
from stages.lib.cli import PipelineError
from stages.lib.params import StageParams
from stages.lib.saving import save_model, save_weights, without_inference_mode

CHECKPOINT = "last.keras"
BEST = "best.weights.h5"
STATE = "state.json"


class TrainingError(PipelineError):
    pass


def set_seeds(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds, and deterministic TF ops (cheap on CPU). Under op determinism Keras
    compiles no model with XLA; nor would that pay here: with determinism off, XLA trained MobileNetV2 0.06-0.08x
    as fast (benchmarks/precision.py)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def learning_rate(
    peak: float, schedule: str, warmup_epochs: int, epochs: int, steps_per_epoch: int
) -> float | LearningRateSchedule:
    """`peak` throughout (constant, no warmup: the reference), else Keras' CosineDecay: a linear warmup from 0 over
    `warmup_epochs`, then `peak` held (constant: alpha 1 keeps it) or decayed along a cosine to 0 by the last step."""
    if schedule == "constant" and warmup_epochs == 0:
        return peak
    alpha = 1.0 if schedule == "constant" else 0.0
    warmup_steps, decay_steps = warmup_epochs * steps_per_epoch, (epochs - warmup_epochs) * steps_per_epoch
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps, alpha=alpha, warmup_target=peak, warmup_steps=warmup_steps
    )


def fingerprint(**parts: object) -> str:
    """A stable hash of what a checkpoint depends on (params values, input metadata, parent model hash)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


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
    names every other model logs. It edits the logs dict Keras passes on, so it must come first in `callbacks`."""

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


def improved(monitor: str, value: float, best: float) -> bool:
    """A loss improves downwards, every metric of heads.METRICS upwards."""
    return value < best if monitor.endswith("loss") else value > best


class ValidateWith(keras.callbacks.Callback):
    """Sets the epoch's val_<name> logs from `validate(model)` instead of Keras' validation pass (see `fit`): first
    in `callbacks`, so that dvclive, the checkpoint's keep_best and the progress line all see them."""

    def __init__(self, validate: Callable[[keras.Model], dict[str, float]]):
        super().__init__()
        self.validate = validate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.validate(self.model))


class Checkpoint(keras.callbacks.Callback):
    """At the end of every epoch: the best weights (when `monitor` improved), then the model, then state.json (next
    epoch, seconds so far, fingerprint, logs, the best epoch and whether early stopping ended training); with
    `writes` off (a worker other than the chief), only the best epoch and early stopping, in memory. Ctrl-C or
    SIGTERM ends the stage with a line naming the epoch and the checkpoint a re-run resumes from (cli)."""

    def __init__(
        self,
        work_dir: Path,
        key: str,
        seconds_before: float,
        state: dict | None,
        epochs: range,
        monitor: str | None = None,
        patience: int = 0,
        writes: bool = True,
    ):
        super().__init__()
        self.work_dir, self.key, self.seconds_before = work_dir, key, seconds_before
        self.monitor, self.patience, self.writes, self.epochs = monitor, patience, writes, epochs
        self.started = time.perf_counter()
        self.next_epoch: int | None = None  # after the first epoch of this run
        self.last_logs = state["logs"] if state else {}
        self.best: dict | None = state.get("best") if state else None  # {"epoch", "value", "logs"}
        self.stopped = bool(state and state.get("stopped"))

    def on_epoch_begin(self, epoch, logs=None):
        self._if_interrupted(f" in epoch {epoch + 1} of {self.epochs.stop}", epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.last_logs = {k: float(v) for k, v in (logs or {}).items()}
        with cli.uninterrupted():  # the best weights, the model and its state: all of this epoch, or none
            self._save(epoch)
            self._if_interrupted(f" after epoch {epoch + 1} of {self.epochs.stop}", epoch + 1)

    def on_train_end(self, logs=None):
        cli.when_interrupted()  # the checkpoint is about to go: the stage's own line again

    def _save(self, epoch: int) -> None:
        if self.monitor:
            value = self.last_logs[self.monitor]
            if self.best is None or improved(self.monitor, value, self.best["value"]):
                if self.writes:
                    save_weights(self.model, self.work_dir / BEST)
                self.best = {"epoch": epoch, "value": value, "logs": self.last_logs}
            if self.patience and epoch - self.best["epoch"] >= self.patience:
                self.model.stop_training = self.stopped = True
        self.next_epoch = epoch + 1
        if not self.writes:  # another worker than the chief: it tracks the best epoch, and writes nothing
            return
        save_model(self.model, self.work_dir / CHECKPOINT)
        seconds = self.seconds_before + time.perf_counter() - self.started
        state = {
            "next_epoch": epoch + 1, "seconds": seconds, "key": self.key, "logs": self.last_logs,
            "best": self.best, "stopped": self.stopped,
        }  # fmt: skip
        files.write_json(self.work_dir / STATE, state)

    def _if_interrupted(self, where: str, checkpointed: int) -> None:
        """What Ctrl-C or SIGTERM prints from now on: `where`, and the epoch a re-run resumes after (`checkpointed`
        epochs of the stage's numbering are in the checkpoint)."""
        if checkpointed <= self.epochs.start:
            then = f"run the stage again to train from epoch {self.epochs.start + 1}"
        elif self.writes:
            then = f"run the stage again to resume from its checkpoint of epoch {checkpointed}"
        else:
            then = f"start every worker again: they resume from the chief's checkpoint of epoch {checkpointed}"
        cli.when_interrupted(where, then)


def _read_state(work_dir: Path, key: str) -> dict | None:
    try:
        state = json.loads((work_dir / STATE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state if state.get("key") == key and (work_dir / CHECKPOINT).is_file() else None


def _drop_logged_steps_from(live_dir: Path, first_step: int) -> None:
    """Remove dvclive rows of epochs that are about to be run again (logged after the last checkpoint)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines(keepends=True)
        header, rows = lines[:1], lines[1:]
        step_col = header[0].rstrip("\n").split("\t").index("step") if header else 0
        kept = [r for r in rows if int(r.split("\t")[step_col]) < first_step]
        files.write_text(tsv, "".join(header + kept))


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
    in `work_dir` is loaded into it (weights and optimizer state). The checkpoint is removed when training completes, so
    a finished stage leaves only its final model (saved by the caller). `val` is a dataset, or a function giving
    the model's val_<name> logs another way (TrainingStage.validation_on_features). With `monitor` (a val metric), the
    model returned has the weights of the epoch that was best by it, and `patience` > 0 stops training after that
    many epochs without a better one.
    """
    work_dir, live_dir, chief = Path(work_dir), Path(live_dir), distribution.writes_outputs(strategy)
    distribution.same_on_every_worker(strategy, key, "params or inputs (params.yaml, data/, models/)")
    # Several workers resume from the chief's checkpoint: it alone writes one (see distribution).
    state = distribution.chief_value(strategy, _read_state(work_dir, key) if chief else None)
    if chief and not state:
        shutil.rmtree(work_dir, ignore_errors=True)
    with strategy.scope():
        model = build()  # on every worker alike: under several, creating variables is a collective
        if state and model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # so that its state is loaded too
    if state:
        if chief:  # out of the scope: loading makes variables of its own, which are no collective then
            model.load_weights(work_dir / CHECKPOINT)
        distribution.weights_from_chief(strategy, model)
        where = work_dir if chief else "the chief's checkpoint folder"
        print(f"resuming from the checkpoint of epoch {state['next_epoch']} in {where}")
    start, seconds_before = (state["next_epoch"], state["seconds"]) if state else (epochs.start, 0.0)
    if chief:
        work_dir.mkdir(parents=True, exist_ok=True)
    resume = bool(state) and live_dir.is_dir()
    if resume and chief:
        _drop_logged_steps_from(live_dir, start)
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
            model.load_weights(work_dir / BEST)
        final, best_epoch = checkpoint.best["logs"], checkpoint.best["epoch"] + 1
    if chief:
        shutil.rmtree(work_dir, ignore_errors=True)
    return FitResult(
        model=model,
        final=final,
        epochs=trained_until - epochs.start,
        best_epoch=best_epoch,
        seconds=seconds_before + run_seconds,
        images_per_second=train_count * (trained_until - start) / run_seconds if run_seconds > 0 else 0.0,
    )


def one_view_each(views: np.ndarray, labels: np.ndarray, seed: int) -> tf.data.Dataset:
    """(view, label) of every image, reshuffled every epoch, the view one of the image's views[:, k] drawn anew
    every epoch (seeded: the same draws in every run)."""
    count = views.shape[1]
    images = tf.data.Dataset.from_tensor_slices((views, labels)).shuffle(len(labels), seed=seed)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return tf.data.Dataset.zip(images, draws).map(lambda image, draw: (image[0][draw % count], image[1]))


def with_optimizer_of(model: keras.Model, trained: keras.Model) -> None:
    """Give `model` the optimizer of `trained`, a model of some of its layers that trained in its place, when
    `trained`'s trainable variables are `model`'s, in the same order: the saved file then holds the state that
    trained them (Keras' default load restores it), not an optimizer never built (which it warns of)."""
    if trained is model or trained.optimizer is None:
        return
    if [id(v) for v in trained.trainable_variables] == [id(v) for v in model.trainable_variables]:
        model.optimizer = trained.optimizer


def count_params(model: keras.Model) -> dict[str, int]:
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    return {"params.total": int(model.count_params()), "params.trainable": trainable}


def summary(result: FitResult, model: keras.Model) -> dict[str, float | int | str]:
    """Flat metrics/<stage>.json: the last epoch's train.<name> and val.<name> (loss and heads.METRICS), epochs,
    wall time, throughput, parameter counts of the saved model, and the machine configuration (runtime.machine)."""
    out: dict[str, float | int | str] = {}
    for name in ("loss", *heads.METRICS):
        for split, key in (("train", name), ("val", f"val_{name}")):
            if key in result.final:
                out[f"{split}.{name}"] = round(result.final[key], 6)
    out |= count_params(model)
    out["epochs"] = result.epochs
    if result.best_epoch is not None:
        out["best_epoch"] = result.best_epoch
    out["seconds"] = round(result.seconds, 1)
    out["images_per_second"] = round(result.images_per_second, 1)
    return out | runtime.machine()


@dataclass(frozen=True)
class TrainingStage:
    """What a training stage sets up before its model and uses after it: see `start`."""

    name: str  # baseline, transfer or finetune
    args: argparse.Namespace  # the paths of cli.training_parser
    params: StageParams  # the stage's view; it declares seed and train
    strategy: tf.distribute.Strategy
    meta: dict  # the records' meta.json

    @property
    def num_classes(self) -> int:
        return len(self.meta["class_names"])

    def class_weights(self) -> np.ndarray | None:
        """train.class_weight: balanced gives class c the weight n / (classes x n_c) (scikit-learn's "balanced"),
        so every class weighs as much in the loss as it would in a balanced train split; none gives None."""
        if self.params.train.class_weight == "none":
            return None
        per_class = self.meta["splits"]["train"]["per_class"]
        counts = np.array([per_class[name] for name in self.meta["class_names"]], dtype=np.float64)
        return counts.sum() / (len(counts) * counts)

    def _labels(self, labels: tf.Tensor) -> tf.Tensor:
        """Class indices as the loss takes them: one-hot when it smooths more than two classes (heads)."""
        if heads.one_hot_targets(self.num_classes, self.params.train.label_smoothing):
            return tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        return labels

    def for_training(self, train: tf.data.Dataset) -> tf.data.Dataset:
        """Batches of (x, labels) -> (x, targets[, sample weights under train.class_weight: balanced])."""
        weights = self.class_weights()
        if weights is None:
            return train.map(lambda x, labels: (x, self._labels(labels)))
        table = tf.constant(weights, tf.float32)
        return train.map(lambda x, labels: (x, self._labels(labels), tf.gather(table, tf.cast(labels, tf.int32))))

    def for_validation(self, val: tf.data.Dataset) -> tf.data.Dataset:
        return val.map(lambda x, labels: (x, self._labels(labels)))

    def datasets(self, image_size: int, batch_size: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
        """(train, val): train reshuffled every epoch from `seed` (with sample weights under train.class_weight:
        balanced), val in its stored order; labels as the loss takes them."""
        seed, cache, records_dir = self.params.seed, self.params.train.cache_images, self.args.records
        train = records.make_dataset(
            records_dir, "train", image_size=image_size, batch_size=batch_size, shuffle_seed=seed, cache=cache
        )
        val = records.make_dataset(records_dir, "val", image_size=image_size, batch_size=batch_size, cache=cache)
        return self.for_training(train), self.for_validation(val)

    def validation_on_features(
        self, features: np.ndarray, labels: np.ndarray, head: Callable[[keras.Model], keras.Model], batch_size: int
    ) -> Callable[[keras.Model], dict[str, float]]:
        """A `val` for `fit` that scores `head(model)` (the model's own layers above the features, shared) on val
        features computed once: what the whole model would give, without running its frozen part every epoch."""
        val = self.for_validation(tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size))
        val = distribution.shard_by_batch(val, self.strategy)
        scored: list[keras.Model] = []  # head(model), made at the first epoch's end

        def validate(model: keras.Model) -> dict[str, float]:
            if not scored:
                with self.strategy.scope():  # compiled for its loss and metrics only; it is never trained itself
                    scored.append(self.compile(head(model), keras.optimizers.SGD()))
            scores = scored[0].evaluate(val, verbose=0, return_dict=True)
            return {f"val_{name}": float(value) for name, value in scores.items()}

        return validate

    def learning_rate(self, peak: float, recipe: StageParams, batch_size: int) -> float | LearningRateSchedule:
        """The learning rate for a stage section's lr_schedule, warmup_epochs and epochs (see `learning_rate`)."""
        steps_per_epoch = math.ceil(self.meta["splits"]["train"]["count"] / batch_size)
        return learning_rate(peak, recipe.lr_schedule, recipe.warmup_epochs, recipe.epochs, steps_per_epoch)

    def compile(self, model, optimizer: keras.optimizers.Optimizer):
        """`model` (a keras.Model or architectures.TrainingModels) compiled with heads' loss and metrics."""
        smoothing = self.params.train.label_smoothing
        loss, metrics = heads.loss(self.num_classes, smoothing), heads.metrics(self.num_classes, smoothing)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=False)  # no XLA: set_seeds
        return model

    def fit(self, build, train: tf.data.Dataset, val: tf.data.Dataset, epochs: range, **inputs: object) -> FitResult:
        """`fit` with this stage's paths, strategy, train.keep_best and train.patience, and a fingerprint of its
        params, the records and `inputs`."""
        key = fingerprint(stage=self.name, params=self.params.snapshot(), meta=self.meta, **inputs)
        keep_best = self.params.train.keep_best
        with distribution.worker_failures(self.strategy):
            return fit(
                build, train, val, epochs=epochs, train_count=self.meta["splits"]["train"]["count"],
                work_dir=self.args.checkpoints, live_dir=self.args.logs, key=key, strategy=self.strategy,
                monitor=None if keep_best == "none" else keep_best, patience=self.params.train.patience,
            )  # fmt: skip

    @contextlib.contextmanager
    def scope(self):
        """The strategy's scope, to build and compile the stage's model in. Under several workers creating its
        variables is the workers' first collective: one line there too when another worker stopped."""
        with distribution.worker_failures(self.strategy), self.strategy.scope():
            yield

    def finish(self, model: keras.Model, result: FitResult, cause: str | None = None, **extra: object) -> dict:
        """Save the model, write metrics/<stage>.json (summary plus `extra`) and the headline
        metrics/val/<stage>.json (val accuracy), print the stage's last line, and a
        warning when the model is no better than chance on val (with its likely `cause`, where the stage knows it).
        Another worker than the chief writes nothing: the chief holds the same model. `result.model` may be a part
        of `model` that trained on cached features (sharing its layers): `model` is saved with its optimizer."""
        with_optimizer_of(model, result.model)
        metrics = summary(result, model) | extra | self.params.as_metrics()
        val_accuracy = metrics.get("val.accuracy", float("nan"))
        warning = chance.chance_warning(self.name, val_accuracy, self.meta["splits"]["val"]["per_class"], cause)
        if warning:
            print(f"{self.name}: warning: {warning.removeprefix(self.name + ': ')}")
        if not distribution.writes_outputs(self.strategy):
            worker = self.strategy.cluster_resolver.task_id
            print(f"{self.name}: val accuracy {val_accuracy:.4f} (worker {worker}: the chief writes the outputs)")
            return metrics
        saved = without_inference_mode(model)  # loads in plain Keras
        if saved is not model:  # with the optimizer that trained the same variables, so its state is saved; outside
            self.compile(saved, model.optimizer)  # the strategy's scope: the chief alone creates its metrics' variables
        save_model(saved, self.args.model)
        files.write_json(self.args.metrics, metrics)
        # The headline row: `accuracy`, the test rows' column too, so `dvc metrics show` stays as wide.
        files.write_json(self.args.val_metrics, {"accuracy": val_accuracy})
        print(f"{self.name}: val accuracy {val_accuracy:.4f} -> {self.args.model}")
        return metrics


def start(name: str, args: argparse.Namespace, params: StageParams) -> TrainingStage:
    """The tf.distribute strategy (first: see distribution.make_strategy), seeds and the records' meta: the set-up
    every training stage begins with."""
    strategy = distribution.make_strategy(params.train.strategy, params.train.join_timeout)
    set_seeds(params.seed)
    keras.mixed_precision.set_global_policy(params.train.precision)  # models built from here on compute in it
    meta = records.read_meta(args.records)
    counts = {split: meta["splits"][split]["count"] for split in ("train", "val")}
    distribution.even_shares(strategy, f"{name}.batch_size", getattr(params, name).batch_size, counts)
    return TrainingStage(name, args, params, strategy, meta)
