"""Training shared by the baseline, transfer and finetune stages: strategy, seeds, resumable fit, logs.

`fit_resumable` wraps `model.fit` with what a pipeline stage needs and Keras does not do alone:
- every finished epoch ends with an atomic checkpoint (the model with its optimizer state, and a small
  state file: next epoch, wall time so far, and a fingerprint of the params and inputs); a stage killed
  mid-training and run again continues from the last finished epoch if the fingerprint still matches;
- per-epoch metrics go to dvclive (`Live(dir, dvcyaml=False)`, so dvclive never rewrites dvc.yaml: the
  plots are declared in dvc.yaml by hand), with the epoch as the step, so fine-tuning continues the
  transfer stage's epoch numbers;
- a NaN or infinite loss stops training with a `TrainingError` (and no model is written).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf
from dvclive import Live

from stages.lib import atomic, runtime
from stages.lib.cli import PipelineError

CHECKPOINT = "last.keras"
STATE = "state.json"
LOGGED = ("loss", "accuracy", "val_loss", "val_accuracy")


class TrainingError(PipelineError):
    pass


def add_stage_arguments(parser: argparse.ArgumentParser, stage: str) -> None:
    """The input and output paths every training stage takes, defaulting to the pipeline's layout."""
    parser.add_argument("--records", type=Path, default=Path("data/tfrecords"))
    parser.add_argument("--model", type=Path, default=Path(f"models/{stage}.keras"))
    parser.add_argument("--logs", type=Path, default=Path(f"dvclive/{stage}"))
    parser.add_argument("--metrics", type=Path, default=Path(f"metrics/{stage}.json"))
    parser.add_argument("--checkpoints", type=Path, default=Path(f"models/checkpoints/{stage}"))


def logit_loss() -> keras.losses.Loss:
    return keras.losses.BinaryCrossentropy(from_logits=True)


def logit_metrics() -> list[keras.metrics.Metric]:
    return [keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")]  # threshold on the logit, i.e. p = 0.5


def set_seeds(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds, and deterministic TF ops (cheap on CPU)."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`train.strategy`: the batch size stays global; each replica gets batch / replicas."""
    if name == "none":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if "TF_CONFIG" not in os.environ:
        raise TrainingError("train.strategy: multi_worker needs the TF_CONFIG environment variable (cluster and task)")
    return tf.distribute.MultiWorkerMirroredStrategy()


def fingerprint(**parts: object) -> str:
    """A stable hash of what a checkpoint depends on (params values, input metadata, parent model hash)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def save_model(model: keras.Model, path: Path) -> None:
    """Atomic `model.save`: Keras needs the .keras suffix, so the temporary name keeps it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class FitResult:
    model: keras.Model
    final: dict[str, float]  # the last epoch's loss, accuracy, val_loss, val_accuracy
    epochs: int  # epochs of this stage, including any run before a resume
    seconds: float  # wall time of training, including any run before a resume
    images_per_second: float  # training throughput of this process


class _EpochEnd(keras.callbacks.Callback):
    """Log the epoch to dvclive, then checkpoint it; stop on a non-finite loss."""

    def __init__(self, live: Live, work_dir: Path, key: str, seconds_before: float, started: float):
        super().__init__()
        self.live, self.work_dir, self.key = live, work_dir, key
        self.seconds_before, self.started = seconds_before, started
        self.last_logs: dict[str, float] = {}

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingError(
                f"the training loss became {float(loss)} in epoch {self.live.step + 1}, batch {batch + 1}; "
                "no model was written. Lower the learning rate or check the input data."
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = _main_output_logs({k: float(v) for k, v in (logs or {}).items()})
        for name in ("loss", "val_loss"):
            if name in logs and not math.isfinite(logs[name]):
                raise TrainingError(f"{name} became {logs[name]} in epoch {epoch + 1}; no model was written")
        self.live.step = epoch
        for name in LOGGED:
            if name in logs:
                self.live.log_metric(name, logs[name])
        self.live.log_metric("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
        self.live.make_summary()
        save_model(self.model, self.work_dir / CHECKPOINT)
        seconds = self.seconds_before + time.perf_counter() - self.started
        self.last_logs = logs
        state = {"next_epoch": epoch + 1, "seconds": seconds, "key": self.key, "logs": logs}
        atomic.write_json(self.work_dir / STATE, state)


def _main_output_logs(logs: dict[str, float]) -> dict[str, float]:
    """A model with auxiliary outputs (GoogLeNet) logs its main output as `logit_loss`, `val_logit_accuracy`...;
    report those under the plain names, so every stage logs the main output's loss and accuracy."""
    main = {k.replace("logit_", "", 1): v for k, v in logs.items() if k.startswith(("logit_", "val_logit_"))}
    return logs | main


def _read_state(work_dir: Path, key: str) -> dict | None:
    try:
        state = json.loads((work_dir / STATE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state if state.get("key") == key and (work_dir / CHECKPOINT).is_file() else None


def _drop_logged_steps_from(live_dir: Path, first_step: int) -> None:
    """Remove dvclive rows of epochs that are about to be run again (logged before the last checkpoint)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines(keepends=True)
        header, rows = lines[:1], lines[1:]
        step_col = header[0].rstrip("\n").split("\t").index("step") if header else 0
        kept = [r for r in rows if int(r.split("\t")[step_col]) < first_step]
        atomic.write_text(tsv, "".join(header + kept))


def fit_resumable(
    build: Callable[[], keras.Model],
    train: tf.data.Dataset,
    val: tf.data.Dataset,
    *,
    first_epoch: int,
    last_epoch: int,
    train_count: int,
    work_dir: Path,
    live_dir: Path,
    key: str,
    strategy: tf.distribute.Strategy,
) -> FitResult:
    """Train epochs first_epoch..last_epoch-1 (0-based; logs show them 1-based), resuming if possible.

    `build` returns a compiled model; it is called in the strategy's scope, unless a matching checkpoint
    (same `key`) exists in `work_dir`, which is then loaded instead. The checkpoint is removed when
    training completes, so a finished stage leaves only its final model (saved by the caller).
    """
    work_dir, live_dir = Path(work_dir), Path(live_dir)
    state = _read_state(work_dir, key)
    with strategy.scope():
        if state:
            model = keras.models.load_model(work_dir / CHECKPOINT, safe_mode=True)
            start, seconds_before = state["next_epoch"], state["seconds"]
            print(f"resuming from the checkpoint of epoch {start} in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
            model = build()
            start, seconds_before = first_epoch, 0.0
    work_dir.mkdir(parents=True, exist_ok=True)
    resume = bool(state) and live_dir.is_dir()
    if resume:
        _drop_logged_steps_from(live_dir, start)
    started = time.perf_counter()
    with Live(str(live_dir), resume=resume, dvcyaml=False, save_dvc_exp=False, report=None) as live:
        epoch_end = _EpochEnd(live, work_dir, key, seconds_before, started)
        epoch_end.last_logs = state["logs"] if state else {}
        if start < last_epoch:
            model.fit(
                train,
                validation_data=val,
                initial_epoch=start,
                shuffle=False,  # the datasets shuffle themselves, seeded
                epochs=last_epoch,
                callbacks=[epoch_end],
                verbose=1 if sys.stdout.isatty() else 2,  # a progress bar on a terminal, one line per epoch in CI logs
            )
    run_seconds = time.perf_counter() - started
    epochs_now = last_epoch - start
    final = epoch_end.last_logs
    shutil.rmtree(work_dir, ignore_errors=True)
    return FitResult(
        model=model,
        final={k: final[k] for k in LOGGED if k in final},
        epochs=last_epoch - first_epoch,
        seconds=seconds_before + run_seconds,
        images_per_second=train_count * epochs_now / run_seconds if run_seconds > 0 else 0.0,
    )


def stage_metrics(result: FitResult, params_count: dict[str, int]) -> dict[str, float | int]:
    """Flat metrics/<stage>.json: final train/val numbers, epochs, wall time, throughput, parameter counts,
    and the machine configuration the numbers hold for (runtime.machine)."""
    names = {"loss": "train.loss", "accuracy": "train.accuracy", "val_loss": "val.loss", "val_accuracy": "val.accuracy"}
    out: dict[str, float | int] = {names[k]: round(v, 6) for k, v in result.final.items()}
    out.update(params_count)
    out["epochs"] = result.epochs
    out["seconds"] = round(result.seconds, 1)
    out["images_per_second"] = round(result.images_per_second, 1)
    return out | runtime.machine()


def count_params(model: keras.Model) -> dict[str, int]:
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    return {"params.total": int(model.count_params()), "params.trainable": trainable}
