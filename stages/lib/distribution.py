"""train.strategy: the tf.distribute strategy a training stage runs under, and what several worker processes need
besides it.

`multi_worker` is TensorFlow's MultiWorkerMirroredStrategy: one process per worker, on one host or several, each
running the same stage command with TF_CONFIG naming the cluster and its own place in it. Every step, each worker
computes the gradients of its share of the global batch and the gradients are all-reduced, so every worker holds
the same weights. What that needs here:
- Keras 3's `fit` fails under the strategy before its first step (keras-team/keras#20585):
  `internals.multi_worker_fixes` corrects the two places (tests/test_distribution.py shows plain Keras still
  failing, so a fixed release shows), and `internals.seeds_per_replica` gives each replica its own random
  augmentation (under `mirrored` with several replicas too);
- every worker reads the whole split and keeps its share of each batch (`shard_by_batch`), so the batches, and
  the model, are those of one process, when the shares are equal (`even_shares`);
- only the chief (worker 0) writes anything: model, metrics, dvclive logs and the epoch checkpoints
  (`writes_outputs`); restarted, every worker resumes from the chief's checkpoint (`chief_value`,
  `weights_from_chief`), so the workers need no shared folder, and none of them can resume from another epoch;
- workers given other params or inputs are refused (`same_on_every_worker`), and a worker that stops ends the
  others with one line (`worker_failures`);
- TF_CONFIG is checked before TensorFlow reads it, and the workers wait for each other in Python with a timeout
  (train.join_timeout), not in TensorFlow, whose wait ignores Ctrl-C and SIGTERM: cluster.py, which needs no
  TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading

import numpy as np
import tensorflow as tf

from stages.lib import cluster
from stages.lib.errors import PipelineError, first_line


def make_strategy(name: str, join_timeout: float) -> tf.distribute.Strategy:
    """`train.strategy`: the batch size stays global; each replica gets batch / replicas. Under multi_worker, a
    worker that has not started after `join_timeout` seconds ends this one with a line naming it.

    MultiWorkerMirroredStrategy must be created before anything starts TensorFlow's runtime (listing devices
    does), so training.start creates the strategy first."""
    from stages.lib import internals  # Keras' private names: checked when imported

    if name == "multi_worker":
        config = cluster.tf_config()  # a missing or broken TF_CONFIG is one line, not a hang or a single-worker run
        cluster.join(config, join_timeout)
        internals.multi_worker_fixes()
        internals.seeds_per_replica()
        # Every worker has started: TensorFlow's own wait is short, unless one stops right now.
        timer = threading.Timer(join_timeout, cluster.never_joined, (config, join_timeout))
        timer.daemon = True
        timer.start()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        timer.cancel()
        # Its coordination service took SIGTERM for a preemption notice nothing here reads: the stage's again.
        signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGTERM))
        return strategy
    if name == "none":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    elif name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    else:
        raise PipelineError(f"train.strategy: unknown strategy {name!r}")  # params.py allows only the ones above
    if strategy.num_replicas_in_sync > 1:
        internals.seeds_per_replica()
    return strategy


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def writes_outputs(strategy: tf.distribute.Strategy) -> bool:
    """The chief, or the only process: the one that writes the model, metrics and logs."""
    return strategy.extended.should_checkpoint


def shard_by_batch(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy) -> tf.data.Dataset:
    """Under several workers, each reads the whole dataset and keeps its slice of every global batch (tf.data's
    DATA sharding): the batches are those one process trains on. (The default, FILE, gives each worker whole
    TFRecord shards: other batches, another model.)"""
    if not is_multi_worker(strategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def even_shares(
    strategy: tf.distribute.Strategy, batch_key: str, batch_size: int, counts: dict[str, int]
) -> str | None:
    """Each worker averages the loss and metrics over its share of a global batch and the workers' averages are
    averaged: one process's average only when the shares are equal. Refused: a batch size that is no multiple of
    the workers (every step uneven), and a last batch with fewer images than workers (a worker would get none,
    which fails). A last batch that splits unevenly gets a warning, returned: a split whose size is no multiple of the
    workers has one under every batch size that is (its remainder is the split size's)."""
    if not is_multi_worker(strategy):
        return None
    workers = strategy.num_replicas_in_sync  # shares of a batch: one per worker, or per GPU of each
    noun = "workers" if len(strategy.extended.worker_devices) == 1 else "replicas (devices of all workers)"
    if batch_size % workers:
        nearest = workers * max(1, (batch_size + workers // 2) // workers)
        raise PipelineError(
            f"{batch_key}={batch_size} does not split evenly over the {workers} {noun}, so they would not train "
            f"the model one process trains; set {batch_key} to {nearest}"
        )
    last = {split: count % batch_size for split, count in counts.items() if count % batch_size % workers}
    sizes = ", ".join(f"the last {split} batch holds {size}" for split, size in last.items())
    if any(size < workers for size in last.values()):
        fits = [size for size in range(workers, 2 * batch_size + 1, workers)
                if not any(0 < count % size < workers for count in counts.values())]  # fmt: skip
        nearest = min(fits, key=lambda size: (abs(size - batch_size), -size), default=None)
        raise PipelineError(
            f"{batch_key}={batch_size}: {sizes} image(s), fewer than the {workers} {noun}, one of which would get "
            f"none and fail; " + (f"set {batch_key} to {nearest}" if nearest else "change the splits' sizes")
        )
    if not last:
        return None
    return (
        f"{batch_key}={batch_size}: {sizes} images, which do not split evenly over the {workers} {noun} (under no "
        f"batch size: {' and '.join(str(counts[split]) for split in last)} images are no multiple of {workers}), so "
        "that step of every epoch weighs images a little unlike one process"
    )


def _summed(strategy: tf.distribute.Strategy, values: list, first_only: bool = False) -> list[np.ndarray]:
    """The sum of every replica's `values` (with `first_only`: the first replica's, the chief's, as every worker
    has zeros in their place), on every worker: one all-reduce."""

    def replica_fn():
        context = tf.distribute.get_replica_context()
        keep = tf.logical_or(not first_only, tf.equal(context.replica_id_in_sync_group, 0))
        kept = [tf.where(keep, value, tf.zeros_like(value)) for value in values]
        by_dtype: dict = {}  # an all-reduce of a list packs it into one tensor: one per dtype
        for i, value in enumerate(kept):
            by_dtype.setdefault(value.dtype, []).append(i)
        summed = [None] * len(kept)
        for indices in by_dtype.values():
            for i, value in zip(indices, context.all_reduce("SUM", [kept[i] for i in indices]), strict=True):
                summed[i] = value
        return summed

    # Eagerly: a few small values once per stage. (TensorFlow warns of the overhead, meant for training steps;
    # a tf.function per call warns of retracing instead.)
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")
    try:
        summed = strategy.run(replica_fn)
    finally:
        logger.setLevel(level)
    return [strategy.experimental_local_results(value)[0].numpy() for value in summed]


def chief_value(strategy: tf.distribute.Strategy, value: object) -> object:
    """The chief's `value` (anything JSON can hold) on every worker; `value` itself for one process. Every worker
    must call it at the same point (a collective), as every other function here that takes a strategy."""
    if not is_multi_worker(strategy):
        return value
    text = np.frombuffer(json.dumps(value).encode(), np.uint8).astype(np.int32)
    (size,) = _summed(strategy, [np.array(len(text), np.int32)], first_only=True)
    padded = np.zeros(int(size), np.int32)
    padded[: len(text)] = text[: int(size)]
    (chief_text,) = _summed(strategy, [padded], first_only=True)
    return json.loads(chief_text.astype(np.uint8).tobytes().decode())


def same_on_every_worker(strategy: tf.distribute.Strategy, fingerprint: str, what: str) -> None:
    """Workers given other params or inputs would train apart, or wait for each other forever: every one of them
    stops with one line."""
    if not is_multi_worker(strategy):
        return
    differs = chief_value(strategy, fingerprint) != fingerprint
    (workers_that_differ,) = _summed(strategy, [np.array(int(differs), np.int32)])
    if workers_that_differ:
        raise PipelineError(
            f"{int(workers_that_differ)} worker(s) were given other {what} than the chief (worker 0)"
            f"{', this one among them' if differs else ''}: give every worker the same, then start all of them again"
        )


def weights_from_chief(strategy: tf.distribute.Strategy, model) -> None:
    """Set every worker's model and optimizer variables to the chief's (which loaded its checkpoint into the same
    model, built by all of them)."""
    if not is_multi_worker(strategy):
        return
    variables = list(model.variables) + (list(model.optimizer.variables) if model.optimizer is not None else [])
    for variable, value in zip(
        variables, _summed(strategy, [v.value for v in variables], first_only=True), strict=True
    ):
        variable.assign(value)


@contextlib.contextmanager
def worker_failures(strategy: tf.distribute.Strategy):
    """Under several workers, a worker that stopped (killed, crashed, its own error, its host gone) fails the
    others' next collective: one line on them too. One process's errors pass unchanged."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError) as exc:
        if not is_multi_worker(strategy):
            raise
        reason = re.sub(r"\s*\{\{[^}]*\}\}", "", first_line(exc)).strip()  # without the name of TensorFlow's op
        raise PipelineError(
            f"another worker stopped ({reason}); see its own output for why, then start every worker again: "
            "they resume from the chief's last checkpoint"
        ) from None
