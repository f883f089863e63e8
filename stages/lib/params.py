"""Load `params.yaml` into frozen, typed dataclasses, validated on load.

Every section of params.yaml is one dataclass below, and every key is required: a default hidden in
code would be a number DVC does not track. Unknown keys, wrong types (no silent "5" -> 5) and
out-of-range values fail with a `ParamsError` that names the file, the key and what is allowed.

A stage reads its params through `for_stage(PARAMS)`, a view that allows only the keys the stage
declares (the same list as its `params:` in dvc.yaml) and records which it read, so a test can check
that DVC re-runs exactly the stages a change affects. Run as a command (cli.run), the stage also replaces no
output once the file holds other values for those keys than it read (`unchanged_since_read`): DVC records the
values the file holds when the stage ends, and would file outputs of the old ones under the new.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import reprlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass

from stages.lib import cli, heads, reference, sources
from stages.lib.architectures import ARCHITECTURES
from stages.lib.bases import BASES
from stages.lib.cli import PARAMS_FILE, PipelineError, first_line
from stages.lib.sample.drawing import ANIMALS

MAX_SAMPLE_CLASSES = len(ANIMALS)

# Named datasets that `data.source` accepts besides URLs and local archives.
SAMPLE_DATASET = "sample"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


class ParamsError(PipelineError, ValueError):
    """params.yaml is missing, unreadable, or has a bad key or value."""


def _check_source(value: str) -> str:
    if value in (*sources.NAMES, SAMPLE_DATASET) or re.match(r"https?://\S+$", value):
        return value
    if "://" not in value and value.lower().endswith(ARCHIVE_SUFFIXES):
        return value
    raise ValueError(
        f"must be a named dataset ({', '.join(sources.NAMES)}), {SAMPLE_DATASET!r}, an http(s) URL or a local "
        f"archive path ending in {', '.join(ARCHIVE_SUFFIXES)} (got {value!r})"
    )


def _check_sha256(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError(f"must be null or 64 hex digits (got {value!r})")
    return value.lower() if value else value


def _check_stored_size(value: int) -> int:
    if value != 0 and not 32 <= value <= 1024:
        raise ValueError(f"must be 0 (keep original sizes) or between 32 and 1024 pixels (got {value})")
    return value


def _in_registry(registry: dict[str, Any]):
    """A validator that accepts the registry's names as they are when params.yaml is loaded."""

    def check(value: str) -> str:
        if value not in registry:
            raise ValueError(f"must be one of {', '.join(registry)} (got {value!r})")
        return value

    return check


def _check_calibration_images(value: int) -> int:
    if value != 0 and value < 2:  # one image has no spread across the batch to take variances from
        raise ValueError(f"must be 0 (keep Keras' default BatchNorm statistics) or at least 2 (got {value})")
    return value


Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Str = Annotated[str, Strict()]
Seed = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]

_CONFIG = ConfigDict(extra="forbid")  # frozen comes from the decorator


@dataclass(frozen=True, config=_CONFIG)
class DataParams:
    source: Annotated[Str, AfterValidator(_check_source)]
    sha256: Annotated[Str | None, AfterValidator(_check_sha256)]  # optional pin, checked before extraction
    max_archive_members: Annotated[Int, Field(ge=1)]  # extraction caps against archive bombs
    max_archive_bytes: Annotated[Int, Field(ge=1)]
    max_compression_ratio: Annotated[Int, Field(ge=1)]  # unpacked / packed bytes of one member (archive.py)
    sample_train_per_class: Annotated[Int, Field(ge=2, le=100_000)]
    sample_validation_per_class: Annotated[Int, Field(ge=2, le=100_000)]
    sample_classes: Annotated[Int, Field(ge=2, le=MAX_SAMPLE_CLASSES)]  # the first N of sample.drawing.ANIMALS


@dataclass(frozen=True, config=_CONFIG)
class SplitParams:
    test_fraction: Annotated[Float, Field(gt=0, lt=1)]  # share of the held-out images that become the test set
    holdout_fraction: Annotated[Float, Field(gt=0, lt=1)]  # single-folder datasets: share held out from training


@dataclass(frozen=True, config=_CONFIG)
class EncodeParams:
    image_size: Annotated[Int, AfterValidator(_check_stored_size)]  # stored square size; 0 keeps originals
    jpeg_quality: Annotated[Int, Field(ge=50, le=100)]
    examples_per_shard: Annotated[Int, Field(ge=1)]


ImageSize = Annotated[Int, Field(ge=32, le=1024)]
Epochs = Annotated[Int, Field(ge=1, le=10_000)]
BatchSize = Annotated[Int, Field(ge=1, le=65_536)]
LearningRate = Annotated[Float, Field(gt=0, le=10)]
Factor = Annotated[Float, Field(ge=0, lt=1)]  # augmentation strengths, as fractions


@dataclass(frozen=True, config=_CONFIG)
class AugmentParams:
    """Keras preprocessing layers inside the model; 0 (or flip: none) leaves a layer out."""

    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"]
    rotation: Factor  # fraction of a full turn, as keras.layers.RandomRotation
    zoom: Factor
    translation: Factor
    contrast: Factor
    brightness: Factor


# What train.keep_best may watch: nothing, or the val loss or a val metric of heads.METRICS.
MONITORS = ("none", "val_loss", *(f"val_{name}" for name in heads.METRICS))


def _check_monitor(value: str) -> str:
    if value not in MONITORS:
        raise ValueError(f"must be one of {', '.join(MONITORS)} (got {value!r})")
    return value


def _check_strategy(value: str) -> str:
    if value not in STRATEGIES:
        raise ValueError(f"must be one of {', '.join(STRATEGIES)} (got {value!r})")
    return value


STRATEGIES = ("auto", "mirrored", "multi_worker", "none")  # distribution.make_strategy


@dataclass(frozen=True, config=_CONFIG)
class TrainParams:
    strategy: Annotated[Str, AfterValidator(_check_strategy)]
    cache_images: StrictBool  # keep decoded train/val images in memory after the first epoch
    class_weight: Literal["none", "balanced"]  # balanced: n / (classes x count of the image's class)
    keep_best: Annotated[Str, AfterValidator(_check_monitor)]  # none: the last epoch's model (the reference)
    patience: Annotated[Int, Field(ge=0)]  # early stopping after this many epochs without a better keep_best
    label_smoothing: Annotated[Float, Field(ge=0, lt=1)]
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"]  # Keras' dtype policy of the models built
    join_timeout: Annotated[Int, Field(ge=1)]  # multi_worker: seconds a worker waits for the others to start


Schedule = Literal["constant", "cosine"]  # after warmup_epochs of linear warmup from 0 (training.learning_rate)


@dataclass(frozen=True, config=_CONFIG)
class BaselineParams:
    arch: Annotated[Str, AfterValidator(_in_registry(ARCHITECTURES))]  # architectures.ARCHITECTURES
    image_size: Annotated[Int, Field(ge=1, le=1024)]  # at least the arch's minimum: checked in Params below
    epochs: Epochs
    batch_size: BatchSize
    learning_rate: LearningRate
    lr_schedule: Schedule
    warmup_epochs: Annotated[Int, Field(ge=0)]
    augment: AugmentParams


@dataclass(frozen=True, config=_CONFIG)
class ModelParams:
    base: Annotated[Str, AfterValidator(_in_registry(BASES))]  # bases.BASES
    weights: Annotated[Str, Field(min_length=1)]  # imagenet, none, or a path to a weights file
    image_size: ImageSize
    dropout: Factor
    fine_tune_at: Annotated[Int, Field(ge=0)] | None  # null: the base's own (bases.BASES); checked against its layers
    # by fine-tuning, which has the base (models.unfreeze_from)
    # with weights: none, train images that set the random base's BatchNorm statistics (models.calibrate_batchnorm)
    calibration_images: Annotated[Int, AfterValidator(_check_calibration_images)]


@dataclass(frozen=True, config=_CONFIG)
class TransferParams:
    epochs: Epochs
    batch_size: BatchSize
    learning_rate: LearningRate
    lr_schedule: Schedule
    warmup_epochs: Annotated[Int, Field(ge=0)]
    cache_features: StrictBool  # train the head on precomputed base features when augmentation is off
    augmented_views: Annotated[Int, Field(ge=0)]  # with augmentation on: features of K views, once (K <= epochs)
    augment: AugmentParams


@dataclass(frozen=True, config=_CONFIG)
class FinetuneParams:
    epochs: Epochs
    batch_size: BatchSize
    lr_factor: Annotated[Float, Field(gt=0, le=1)]  # fine-tuning learning rate = transfer.learning_rate x this
    lr_schedule: Schedule
    warmup_epochs: Annotated[Int, Field(ge=0)]
    cache_features: StrictBool  # validate on the val images' activations below fine_tune_at, computed once


@dataclass(frozen=True, config=_CONFIG)
class EvaluateParams:
    threshold: Annotated[Float, Field(gt=0, lt=1)]  # two classes: decision threshold on the probability of class 1
    batch_size: BatchSize
    top_k: Annotated[Int, Field(ge=2)]  # more than 5 classes: top-k accuracy
    tta: Literal[
        "none", "flip"
    ]  # test-time augmentation in evaluate and export: probabilities averaged with the mirror


@dataclass(frozen=True, config=_CONFIG)
class ExportParams:
    model: Literal[("best", *reference.MODELS)]  # the model a user takes away: best on val, or a stage's (selection.py)
    flag_margin: Annotated[Float, Field(ge=0, le=1)]  # a model this far below the best val accuracy is flagged
    min_agreement: Annotated[Float, Field(ge=0, le=1)]  # below: the format is flagged (it still exports)


@dataclass(frozen=True, config=_CONFIG)
class AuditParams:
    """Suspected label errors, near-duplicates and outliers from the frozen base's features (stages/lib/audit.py)."""

    enabled: StrictBool  # off: the stage writes empty lists and metrics that say it was off
    folds: Annotated[Int, Field(ge=2, le=100)]  # cross-validation folds of the out-of-fold probabilities
    similarity_threshold: Annotated[Float, Field(gt=0, le=1)]  # cosine similarity from which two images are near
    whiten_components: Annotated[Int, Field(ge=0)]  # PCA-whitened dimensions the similarity is taken in; 0: none
    batch_size: BatchSize  # images per batch through the frozen base
    show: Annotated[Int, Field(ge=0, le=100)]  # suspects and near-duplicate pairs shown in the report's grids


@dataclass(frozen=True, config=_CONFIG)
class ReportParams:
    grid_images: Annotated[Int, Field(ge=1, le=100)]  # test images shown with their predictions


@dataclass(frozen=True, config=_CONFIG)
class Params:
    seed: Seed
    data: DataParams
    split: SplitParams
    encode: EncodeParams
    train: TrainParams
    baseline: BaselineParams
    model: ModelParams
    transfer: TransferParams
    finetune: FinetuneParams
    evaluate: EvaluateParams
    export: ExportParams
    audit: AuditParams
    report: ReportParams

    @model_validator(mode="after")
    def _stored_size_covers_every_stage(self) -> Params:
        needed = max(self.model.image_size, self.baseline.image_size)
        if self.encode.image_size and self.encode.image_size < needed:
            raise ValueError(
                f"encode.image_size: {self.encode.image_size} is smaller than the largest size a stage trains at "
                f"({needed}, model.image_size / baseline.image_size); stored images would be upscaled"
            )
        return self

    @model_validator(mode="after")
    def _recipes_fit_their_epochs(self) -> Params:
        for name in ("baseline", "transfer", "finetune"):
            section = getattr(self, name)
            if section.warmup_epochs >= section.epochs:
                raise ValueError(
                    f"{name}.warmup_epochs: {section.warmup_epochs} leaves no epoch after the warmup "
                    f"({name}.epochs is {section.epochs})"
                )
        if self.transfer.augmented_views > self.transfer.epochs:  # each epoch trains on one view per image
            raise ValueError(
                f"transfer.augmented_views: {self.transfer.augmented_views} views of each image are more than the "
                f"{self.transfer.epochs} epochs (transfer.epochs) can train on, and more passes of the base than "
                "computing a new view every epoch (augmented_views: 0)"
            )
        if self.train.patience and self.train.keep_best == "none":
            raise ValueError(
                f"train.patience: {self.train.patience} needs train.keep_best to name the val metric it watches "
                f"({', '.join(MONITORS[1:])})"
            )
        return self

    @model_validator(mode="after")
    def _models_fit_their_registries(self) -> Params:
        arch, base = ARCHITECTURES[self.baseline.arch], BASES[self.model.base]
        if self.baseline.image_size < arch.min_size:
            raise ValueError(
                f"baseline.image_size: {self.baseline.arch} needs at least {arch.min_size} px "
                f"(got {self.baseline.image_size})"
            )
        if self.model.image_size < base.min_size:
            raise ValueError(
                f"model.image_size: {self.model.base} needs at least {base.min_size} px (got {self.model.image_size})"
            )
        return self


_ADAPTER = TypeAdapter(Params)


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "unexpected_keyword_argument":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: missing (every key is required)"
    message = error["msg"].removeprefix("Value error, ")
    if not key:  # a check across sections names its keys in the message itself
        return message
    got = "" if "(got " in message else f" (got {_SHORT_REPR.repr(error['input'])})"
    return f"{key}: {message}{got}"


def parse(raw: Any, source: str = str(PARAMS_FILE)) -> Params:
    """Validate an already-loaded mapping; errors name `source` and every bad key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        if len(problems) == 1:
            raise ParamsError(f"{source}: {problems[0]}") from None
        listing = "\n  ".join(problems)
        raise ParamsError(f"{source}: {len(problems)} invalid parameters:\n  {listing}") from None


def load(path: Path | str = PARAMS_FILE) -> Params:
    return parse(load_yaml(path), str(path))


def load_yaml(path: Path | str = PARAMS_FILE) -> Any:
    """The file's YAML, unvalidated; a file that cannot be read, is not UTF-8 or not YAML is one ParamsError line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")  # what DVC reads it as, whatever the locale
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the project root)") from None
    except IsADirectoryError:
        raise ParamsError(f"{path}: is a directory; the params file must be a YAML file") from None
    except UnicodeDecodeError as exc:
        at = f"byte {exc.object[exc.start]:#04x} at offset {exc.start}"
        raise ParamsError(f"{path}: not UTF-8 text ({at}); save it as UTF-8") from None
    except OSError as exc:
        raise ParamsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=_ParamsLoader)  # noqa: S506 - a SafeLoader, see below
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ParamsError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {first_line(exc)}") from None


class _ParamsLoader(yaml.SafeLoader):
    """safe_load, refusing a key given twice in one mapping (PyYAML keeps the last silently; DVC refuses it)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen and key != "<<":
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}; keep one of them", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Values in error messages, bounded: an alias bomb (nested *refs) expands to gigabytes when printed in full.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80


def all_keys(params: Params) -> set[str]:
    """Dotted names of every leaf key, e.g. {'seed', 'split.test_fraction', ...}."""
    return set(_flatten(dataclasses.asdict(params)))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


READ_PREFIX = "params_read."


class UndeclaredParamError(AttributeError):
    """A stage read a key that its PARAMS (and so its dvc.yaml `params:`) does not list."""


class StageParams:
    """Read-only view of `Params` that allows only declared keys and records the ones read.

    Declared names are dotted leaf keys (`split.test_fraction`) or whole sections (`encode`), as in dvc.yaml.
    """

    def __init__(
        self, node: Any, declared: frozenset[str], read: set[str], prefix: str = "", values: dict | None = None
    ) -> None:
        self._node, self._declared, self.read, self._prefix = node, declared, read, prefix
        self._values: dict[str, Any] = {} if values is None else values

    def _allows(self, key: str) -> bool:
        return any(key == d or key.startswith(d + ".") for d in self._declared)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = self._prefix + name
        value = getattr(self._node, name)
        if dataclasses.is_dataclass(value):
            if not any(self._allows(key) or d.startswith(key + ".") for d in self._declared):
                raise UndeclaredParamError(f"stage reads section {key!r} but declares none of its keys")
            return StageParams(value, self._declared, self.read, key + ".", self._values)
        if not self._allows(key):
            raise UndeclaredParamError(
                f"stage reads {key!r} but does not declare it: "
                "add it to the stage's PARAMS and to its params: in dvc.yaml"
            )
        self.read.add(key)
        self._values[key] = value
        return value

    def as_metrics(self) -> dict[str, Any]:
        """`params_read.<key>`: the value of every key the stage read, for its metrics file. A run whose params.yaml
        changed under it (a second `dvc exp run -S` while a `dvc repro` runs) shows there what it really used."""
        return {f"{READ_PREFIX}{key}": value for key, value in sorted(self._values.items())}

    def snapshot(self) -> dict[str, Any]:
        """Every declared leaf and its value (for checkpoint fingerprints), without counting as a read."""
        leaves = _flatten(dataclasses.asdict(self._node), self._prefix)
        return {key: value for key, value in sorted(leaves.items()) if self._allows(key)}


def for_stage(declared: Iterable[str], path: Path | str = PARAMS_FILE) -> StageParams:
    """Load and validate the whole file, then give the stage a view limited to `declared`; under cli.run, its
    outputs are replaced only while the file still holds the values it read."""
    read_at = _version(path)  # before reading: a change after this is seen by the check
    params = load(path)
    keys = frozenset(declared)
    unknown = [k for k in keys if not any(k == a or a.startswith(k + ".") for a in all_keys(params))]
    if unknown:
        raise ParamsError(f"{path}: stage declares keys that do not exist: {', '.join(sorted(unknown))}")
    view = StageParams(params, keys, set())
    cli.check_before_replacing(unchanged_since_read(view, path, read_at))
    return view


def _version(path: Path | str) -> tuple[int, ...] | None:
    """What tells a changed file from the one read, without reading it (a stat per output replaced)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns


REWRITE_SECONDS = 0.5  # a params file caught half-written by whatever rewrites it is whole again after this


def unchanged_since_read(view: StageParams, path: Path | str, read_at: tuple[int, ...] | None) -> Callable[[], None]:
    """A check that raises a ParamsError naming each key `view` declares whose value in `path` is no longer the one
    the stage read (a `dvc exp run -S` started while this stage runs writes its values there): its outputs are of
    the old values, and DVC would record the new."""
    seen = [read_at]

    def check() -> None:
        version = _version(path)
        if version is not None and version == seen[0]:
            return
        try:
            now = StageParams(load(path), view._declared, set()).snapshot()
        except ParamsError:
            time.sleep(REWRITE_SECONDS)  # caught while being rewritten (`dvc exp run -S` writes it in place)?
            try:
                now = StageParams(load(path), view._declared, set()).snapshot()
            except ParamsError as exc:
                raise ParamsError(f"{path} changed while the stage ran and no longer loads ({exc}); nothing was "
                                  "replaced: fix it and run the stage again") from None  # fmt: skip
        changed = [
            f"{key} was {json.dumps(old, default=str)}, is now {json.dumps(now.get(key), default=str)}"
            for key, old in view.snapshot().items()
            if now.get(key) != old
        ]
        if changed:
            raise ParamsError(
                f"{path} changed while the stage ran: {'; '.join(changed)}; nothing was replaced, as DVC would "
                "record outputs of the old values under the new: run the stage again"
            )
        seen[0] = version

    return check
