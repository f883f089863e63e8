"""Every private Keras and TensorFlow name this project uses, in one place, checked when this module is imported.

Private names change without notice between releases. Importing this module finds each one and checks the call
signature the project relies on (`PRIVATE`); a Keras or TensorFlow that moved or changed one is one `error:` line
naming it and the version requirements.lock pins, not a failure deep inside `fit`. tests/test_internals.py has a
canary per name, which turns red on an upgrade that changes it. What uses them:

- `multi_worker_fixes`: Keras 3.15's TensorFlow trainer fails under MultiWorkerMirroredStrategy before its first step
  (keras-team/keras#20585); installed by distribution.make_strategy for `train.strategy: multi_worker` only.
- `seeds_per_replica`: under a strategy of several replicas every replica's random layers draw the same numbers;
  installed only when the stage's strategy has more than one replica (`multi_worker`, `mirrored`, `auto` on several
  GPUs), never in a single-replica process.
- `onednn_enabled`: whether TensorFlow runs its oneDNN kernels, which the metrics record (runtime.machine).
- `all_layers`: every layer of a model, nested ones too, which no public Keras API lists (serving.in_float32).
- `per_tensor_int8`: TFLiteConverter's only switch for one int8 scale per tensor (`export.int8_per_channel: false`),
  an attribute its constructor sets: checked when it is used, and by a canary that builds a converter.
- `disable_op_determinism`: op determinism off again, which TensorFlow's public API cannot do (benchmarks/precision.py
  measures XLA, which Keras compiles only without it).

Importing it imports Keras and TensorFlow: only the code that needs them imports it, after a stage's own checks.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

import keras
import tensorflow as tf

from stages.lib.errors import PipelineError

REPLICA_SEED_STRIDE = 1_000_003  # replica r draws with seed + r x this: far from the small offsets of the seed
# that separate the random layers of one model (augment.py), so no replica draws another layer's numbers


@dataclass(frozen=True)
class Private:
    module: str
    attribute: str  # dotted inside the module
    parameters: tuple[str, ...]  # the call signature relied on, by parameter names


PRIVATE = (
    Private("keras.src.backend.tensorflow.trainer", "TensorFlowTrainer._maybe_symbolic_build",
            ("self", "iterator", "data_batch")),
    Private("keras.src.backend.tensorflow.trainer", "TensorFlowTrainer._symbolic_build",
            ("self", "iterator", "data_batch")),
    Private("keras.src.backend.tensorflow.trainer", "reduce_per_replica", ("values", "strategy", "reduction")),
    Private("keras.src.backend.tensorflow.trainer", "_collective_all_reduce_multi_worker", ("strategy",)),
    Private("keras.src.random.seed_generator", "SeedGenerator.next", ("self", "ordered")),
    Private("tensorflow.python.util._pywrap_util_port", "IsMklEnabled", ()),
    Private("keras.src.layers.layer", "Layer._flatten_layers", ("self", "include_self", "recursive")),
    Private("tensorflow.python.framework.config", "disable_op_determinism", ()),
)  # fmt: skip


def find(private: Private):
    """The object `private` names, once its signature is the one relied on; PipelineError naming it otherwise."""
    where = f"{private.module}.{private.attribute}"
    try:
        found = importlib.import_module(private.module)
        for part in private.attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        raise _changed(where, "is gone") from None
    try:
        parameters = tuple(inspect.signature(found).parameters)
    except (TypeError, ValueError):  # a C++ function (pybind11) may show no signature: its name is what is relied on
        parameters = private.parameters
    if parameters != private.parameters:
        raise _changed(where, f"takes ({', '.join(parameters)}), not ({', '.join(private.parameters)})")
    return found


def _changed(where: str, what: str) -> PipelineError:
    return PipelineError(
        f"{where} {what} in Keras {keras.__version__} / TensorFlow {tf.__version__}; this project relies on it "
        "(stages/lib/internals.py): install the versions of requirements.lock (make venv)"
    )


_FOUND = {(private.module, private.attribute): find(private) for private in PRIVATE}  # checked on import


def _trainer():
    return importlib.import_module("keras.src.backend.tensorflow.trainer")


def multi_worker_fixes() -> None:
    """Correct Keras 3's TensorFlow trainer under MultiWorkerMirroredStrategy (keras-team/keras#20585), once.

    1. `_maybe_symbolic_build` takes a first batch to build the metrics and reduces it across replicas eagerly,
       which this strategy cannot do with a dataset's values ("Attempt to convert a value (PerReplica...)"). It
       needs only the batch's structure, shapes and dtypes: give it the dataset's element spec. (Taking a batch
       also starts an extra pass over the dataset, so a reshuffling dataset's epochs would not be a single
       process's.)
    2. `reduce_per_replica` means every step's scalar logs across workers along axis 0, which a scalar does not
       have ("Invalid reduction dimension 0"): reduce them as the scalars they are.
    """
    trainer = _trainer()
    if getattr(trainer.reduce_per_replica, "multi_worker_fix", False):
        return

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None and data_batch is None:
            data_batch = iterator.data_adapter.get_tf_dataset().element_spec
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    keras_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    reduce_per_replica.multi_worker_fix = True
    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica


def seeds_per_replica() -> None:
    """Every replica's random layers (augmentation, dropout) draw the same numbers from their seed in Keras 3, so
    image i of each replica's share of a batch gets the same flip, rotation and dropout mask. Replica r draws from
    its seed + r x REPLICA_SEED_STRIDE instead; the first replica's numbers are unchanged. Once."""
    from keras.src.random.seed_generator import SeedGenerator

    if getattr(SeedGenerator.next, "per_replica", False):
        return
    keras_next = SeedGenerator.next

    def next_seed(self, ordered=True):
        seed = keras_next(self, ordered)
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        if isinstance(replica, int) and replica == 0:
            return seed
        return seed + tf.cast(tf.stack([replica * REPLICA_SEED_STRIDE, 0]), seed.dtype)

    next_seed.per_replica = True
    SeedGenerator.next = next_seed


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels in this process (TF_ENABLE_ONEDNN_OPTS, else its CPU rule): the
    switch TensorFlow itself reads, which no public API shows."""
    return bool(_FOUND[("tensorflow.python.util._pywrap_util_port", "IsMklEnabled")]())


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """`model` and every layer inside it, at any depth (a model's, and a wrapper layer's own)."""
    return list(model._flatten_layers(include_self=True, recursive=True))


PER_TENSOR_SWITCH = "_experimental_disable_per_channel"  # set by TFLiteConverter's constructor


def per_tensor_int8(converter) -> None:
    """Have `converter` quantize int8 weights with one scale per tensor, not per output channel (TFLite's default)."""
    if not hasattr(converter, PER_TENSOR_SWITCH):
        raise PipelineError(
            f"export.int8_per_channel: false needs TFLiteConverter.{PER_TENSOR_SWITCH}, which TensorFlow "
            f"{tf.__version__} does not have; set it to true"
        )
    setattr(converter, PER_TENSOR_SWITCH, True)


def disable_op_determinism() -> None:
    """The reverse of tf.config.experimental.enable_op_determinism, which has no public one."""
    _FOUND[("tensorflow.python.framework.config", "disable_op_determinism")]()
