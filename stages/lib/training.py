"""What the baseline, transfer and finetune stages share: `start` gives a stage its strategy, seeds and the records'
meta as a `TrainingStage`, whose methods give it its datasets, learning rate and compiled model, train it
(`fit`: fitting.fit with the stage's paths, strategy and fingerprint) and `finish` it: the saved model, the summary
in metrics/<stage>.json and the headline val accuracy, each with its 95% interval.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras.optimizers.schedules import LearningRateSchedule

from stages.lib import chance, distribution, files, heads, intervals, records, runtime, stage_params
from stages.lib.checkpoints import fingerprint
from stages.lib.errors import warn
from stages.lib.fitting import FitResult, fit
from stages.lib.params import BaselineParams, FinetuneParams, Params, TransferParams
from stages.lib.saving import save_model, without_inference_mode

Recipe = BaselineParams | TransferParams | FinetuneParams  # a training stage's own section of params.yaml


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
    params: Params  # the stage's view (stage_params.for_stage); it declares seed and train
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

    def learning_rate(self, peak: float, recipe: Recipe, batch_size: int) -> float | LearningRateSchedule:
        """The learning rate for a stage section's lr_schedule, warmup_epochs and epochs (see `learning_rate`)."""
        steps_per_epoch = math.ceil(self.meta["splits"]["train"]["count"] / batch_size)
        return learning_rate(peak, recipe.lr_schedule, recipe.warmup_epochs, recipe.epochs, steps_per_epoch)

    def compile(self, model, optimizer: keras.optimizers.Optimizer):
        """`model` (a keras.Model or cnns.TrainingModels) compiled with heads' loss and metrics."""
        smoothing = self.params.train.label_smoothing
        loss, metrics = heads.loss(self.num_classes, smoothing), heads.metrics(self.num_classes, smoothing)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=False)  # no XLA: set_seeds
        return model

    def fit(self, build, train: tf.data.Dataset, val: tf.data.Dataset, epochs: range, **inputs: object) -> FitResult:
        """`fit` with this stage's paths, strategy, train.keep_best and train.patience, and a fingerprint of its
        params, the records and `inputs`."""
        key = fingerprint(stage=self.name, params=stage_params.snapshot(self.params), meta=self.meta, **inputs)
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
        metrics = summary(result, model) | extra | stage_params.values_read(self.params)
        val_accuracy = metrics.get("val.accuracy", float("nan"))
        headline = {"accuracy": val_accuracy}
        if math.isfinite(val_accuracy):  # its 95% interval on the val images, beside it (intervals.py)
            low, high = intervals.wilson_of_share(val_accuracy, self.meta["splits"]["val"]["count"])
            metrics |= {"val.accuracy.low": round(low, 6), "val.accuracy.high": round(high, 6)}
            headline[intervals.HALF_WIDTH] = intervals.half_width(low, high)
        warning = chance.chance_warning(self.name, val_accuracy, self.meta["splits"]["val"]["per_class"], cause)
        if warning:
            warn(self.name, warning.removeprefix(self.name + ": "))
        if not distribution.writes_outputs(self.strategy):
            worker = self.strategy.cluster_resolver.task_id
            print(f"{self.name}: val accuracy {val_accuracy:.4f} (worker {worker}: the chief writes the outputs)")
            return metrics
        saved = without_inference_mode(model)  # loads in plain Keras
        if saved is not model:  # with the optimizer that trained the same variables, so its state is saved; outside
            self.compile(saved, model.optimizer)  # the strategy's scope: the chief alone creates its metrics' variables
        save_model(saved, self.args.model)
        files.write_json(self.args.metrics, metrics)
        # The headline row: `accuracy` and its `ci`, the test rows' columns too, so `dvc metrics show` stays as wide.
        files.write_json(self.args.val_metrics, headline)
        shutil.rmtree(self.args.checkpoints, ignore_errors=True)  # only now: a kill before this resumes, trains nothing
        print(f"{self.name}: val accuracy {val_accuracy:.4f} -> {self.args.model}")
        return metrics


def start(name: str, args: argparse.Namespace, params: Params) -> TrainingStage:
    """The tf.distribute strategy (first: see distribution.make_strategy), seeds and the records' meta: the set-up
    every training stage begins with."""
    strategy = distribution.make_strategy(params.train.strategy, params.train.join_timeout)
    set_seeds(params.seed)
    keras.mixed_precision.set_global_policy(params.train.precision)  # models built from here on compute in it
    meta = records.read_meta(args.records)
    counts = {split: meta["splits"][split]["count"] for split in ("train", "val")}
    uneven = distribution.even_shares(strategy, f"{name}.batch_size", getattr(params, name).batch_size, counts)
    if uneven:
        warn(name, uneven)
    return TrainingStage(name, args, params, strategy, meta)
