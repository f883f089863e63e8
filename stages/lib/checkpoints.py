"""A training stage's checkpoint, so that a stage killed mid-training (even kill -9) resumes from its last finished
epoch: `Checkpoint`, a Keras callback that writes at the end of every epoch, with train.keep_best, first the weights
of the best epoch so far (`best-<epoch>.weights.h5`) and, with train.patience, stops early; then the model (with its
optimizer state, `epoch-<epoch>.keras`) and last the state file that names both, each written atomically. The files
of earlier epochs go only after the new state is written, so a kill at any point (even kill -9, which no handler
can defer) leaves a state whose files are those of its own epoch.

Not Keras' BackupAndRestore: it writes its weights and epoch counter in place, one after the other, so a kill
between or during them leaves a truncated file or an epoch trained twice; it also cannot tell a checkpoint of other
params from its own, and keeps the resumed epoch private, which trimming the logs (`drop_logged_steps_from`) needs.
A checkpoint is resumed only if its fingerprint (params and inputs) matches (`read_state`).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import keras

from stages.lib import files, lifecycle
from stages.lib.saving import save_model, save_weights

STATE = "state.json"  # names the epoch's model and best weights files; they are only ever read through it


def fingerprint(**parts: object) -> str:
    """A stable hash of what a checkpoint depends on (params values, input metadata, parent model hash)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def improved(monitor: str, value: float, best: float) -> bool:
    """A loss improves downwards, every metric of heads.METRICS upwards."""
    return value < best if monitor.endswith("loss") else value > best


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
        self.best: dict | None = state.get("best") if state else None  # {"epoch", "value", "logs", "file"}
        self.stopped = bool(state and state.get("stopped"))

    def on_epoch_begin(self, epoch, logs=None):
        self._if_interrupted(f" in epoch {epoch + 1} of {self.epochs.stop}", epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.last_logs = {k: float(v) for k, v in (logs or {}).items()}
        with lifecycle.uninterrupted():  # the best weights, the model and its state: all of this epoch, or none
            self._save(epoch)
            self._if_interrupted(f" after epoch {epoch + 1} of {self.epochs.stop}", epoch + 1)

    def on_train_end(self, logs=None):
        lifecycle.when_interrupted()  # the checkpoint is about to go: the stage's own line again

    def _save(self, epoch: int) -> None:
        if self.monitor:
            value = self.last_logs[self.monitor]
            if self.best is None or improved(self.monitor, value, self.best["value"]):
                best_file = f"best-{epoch + 1}.weights.h5"
                if self.writes:
                    save_weights(self.model, self.work_dir / best_file)
                self.best = {"epoch": epoch, "value": value, "logs": self.last_logs, "file": best_file}
            if self.patience and epoch - self.best["epoch"] >= self.patience:
                self.model.stop_training = self.stopped = True
        self.next_epoch = epoch + 1
        if not self.writes:  # another worker than the chief: it tracks the best epoch, and writes nothing
            return
        model_file = f"epoch-{epoch + 1}.keras"
        save_model(self.model, self.work_dir / model_file)
        seconds = self.seconds_before + time.perf_counter() - self.started
        state = {
            "next_epoch": epoch + 1, "seconds": seconds, "key": self.key, "logs": self.last_logs,
            "best": self.best, "stopped": self.stopped, "model": model_file,
        }  # fmt: skip
        files.write_json(self.work_dir / STATE, state)
        kept = {STATE, model_file, *([self.best["file"]] if self.best else [])}
        for old in self.work_dir.iterdir():  # earlier epochs' files, now that no state names them
            if old.name not in kept and old.name.endswith((".keras", ".weights.h5")):
                old.unlink()

    def _if_interrupted(self, where: str, checkpointed: int) -> None:
        """What Ctrl-C or SIGTERM prints from now on: `where`, and the epoch a re-run resumes after (`checkpointed`
        epochs of the stage's numbering are in the checkpoint)."""
        if checkpointed <= self.epochs.start:
            then = f"run the stage again to train from epoch {self.epochs.start + 1}"
        elif self.writes:
            then = f"run the stage again to resume from its checkpoint of epoch {checkpointed}"
        else:
            then = f"start every worker again: they resume from the chief's checkpoint of epoch {checkpointed}"
        lifecycle.when_interrupted(where, then)


def read_state(work_dir: Path, key: str) -> dict | None:
    """The state of the checkpoint in `work_dir`, if it is whole, of `key`, and the files it names are there; else
    None."""
    try:
        state = json.loads((work_dir / STATE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(state, dict) or state.get("key") != key or not isinstance(state.get("model"), str):
        return None
    named = [state["model"], *([state["best"]["file"]] if state.get("best") else [])]
    return state if all((work_dir / name).is_file() for name in named) else None


def model_path(work_dir: Path, state: dict) -> Path:
    """The model file of the checkpoint whose state `read_state` gave."""
    return Path(work_dir) / state["model"]


def best_weights_path(work_dir: Path, best: dict) -> Path:
    """The weights file of the best epoch the checkpoint holds (its state's "best")."""
    return Path(work_dir) / best["file"]


def drop_logged_steps_from(live_dir: Path, first_step: int) -> None:
    """Remove dvclive rows of epochs that are about to be run again (logged after the last checkpoint)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines(keepends=True)
        header, rows = lines[:1], lines[1:]
        step_col = header[0].rstrip("\n").split("\t").index("step") if header else 0
        kept = [r for r in rows if int(r.split("\t")[step_col]) < first_step]
        files.write_text(tsv, "".join(header + kept))
