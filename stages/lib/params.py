"""params.yaml's schema: frozen, typed dataclasses, validated when loaded.

Every section of params.yaml is one dataclass below, and every key is required: a default hidden in
code would be a number DVC does not track. Unknown keys, wrong types (no silent "5" -> 5) and
out-of-range values fail with a `ParamsError` that names the file, the key and what is allowed.

The schema knows the plain-data tables below it (bases.py, architectures.py, reference.py, heads.METRICS) and nothing
that builds, draws or downloads: a key that only a registry of code can check is checked by the stage that reads it,
as its first step (a named `data.source` and `data.sample_classes` by the download stage). A stage reads its params
through stage_params.for_stage; params_file.py reads the YAML.
"""

from __future__ import annotations

import dataclasses
import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

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

from stages.lib import heads, params_file, reference
from stages.lib.architectures import ARCHITECTURES
from stages.lib.bases import BASES
from stages.lib.params_file import PARAMS_FILE, ParamsError

SAMPLE_DATASET = "sample"  # data.source: the generated sample (stages/lib/sample), besides named datasets
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


def is_url(value: str) -> bool:
    return re.match(r"https?://\S+$", value) is not None


def is_archive_path(value: str) -> bool:
    return "://" not in value and value.lower().endswith(ARCHIVE_SUFFIXES)


def _check_source(value: str) -> str:
    """A URL other than http(s) is refused here; any other text is a URL, an archive path or a dataset name, which
    the download stage checks against sources.NAMES (and lists them)."""
    if "://" in value and not is_url(value):
        raise ValueError(f"must be an http(s) URL, a local archive path or a dataset name (got {value!r})")
    return value


def _check_sha256(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise ValueError(f"must be null or 64 hex digits (got {value!r})")
    return value.lower() if value else value


def _check_stored_size(value: int) -> int:
    if value != 0 and not 32 <= value <= 1024:
        raise ValueError(f"must be 0 (keep original sizes) or between 32 and 1024 pixels (got {value})")
    return value


def _check_base(value: str) -> str:
    if value not in BASES:  # not a Literal: the registry is read when a file is checked, not frozen at import
        raise ValueError(f"must be one of {', '.join(BASES)} (got {value!r})")
    return value


def _check_arch(value: str) -> str:
    if value not in ARCHITECTURES:  # as _check_base: an entry added to the table is an architecture at once
        raise ValueError(f"must be one of {', '.join(ARCHITECTURES)} (got {value!r})")
    return value


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
    sample_classes: Annotated[Int, Field(ge=2)]  # the first N of sample.drawing.ANIMALS (at most: download)


@dataclass(frozen=True, config=_CONFIG)
class SplitParams:
    test_fraction: Annotated[Float, Field(gt=0, lt=1)]  # share of the held-out images that become the test set
    holdout_fraction: Annotated[Float, Field(gt=0, lt=1)]  # single-folder datasets: share held out from training
    warn_aspect_ratio: Annotated[Float, Field(gt=1)]  # longer side over shorter, past which an image is named
    warn_min_side: Annotated[Int, Field(ge=1)]  # pixels; an image with a side under it is named (1: never)


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
STRATEGIES = ("auto", "mirrored", "multi_worker", "none")  # distribution.make_strategy


@dataclass(frozen=True, config=_CONFIG)
class TrainParams:
    strategy: Literal[STRATEGIES]
    cache_images: StrictBool  # keep decoded train/val images in memory after the first epoch
    class_weight: Literal["none", "balanced"]  # balanced: n / (classes x count of the image's class)
    keep_best: Literal[MONITORS]  # none: the last epoch's model (the reference)
    patience: Annotated[Int, Field(ge=0)]  # early stopping after this many epochs without a better keep_best
    label_smoothing: Annotated[Float, Field(ge=0, lt=1)]
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"]  # Keras' dtype policy of the models built
    join_timeout: Annotated[Int, Field(ge=1)]  # multi_worker: seconds a worker waits for the others to start


Schedule = Literal["constant", "cosine"]  # after warmup_epochs of linear warmup from 0 (training.learning_rate)


@dataclass(frozen=True, config=_CONFIG)
class BaselineParams:
    arch: Annotated[Str, AfterValidator(_check_arch)]  # architectures.ARCHITECTURES, read when checked, as model.base
    image_size: Annotated[Int, Field(ge=1, le=1024)]  # at least the arch's minimum (architectures.ARCHITECTURES)
    epochs: Epochs
    batch_size: BatchSize
    learning_rate: LearningRate
    lr_schedule: Schedule
    warmup_epochs: Annotated[Int, Field(ge=0)]
    augment: AugmentParams


@dataclass(frozen=True, config=_CONFIG)
class ModelParams:
    base: Annotated[Str, AfterValidator(_check_base)]  # bases.BASES, read when checked: an entry added is a base
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
    # resamples of the test images behind F1's 95% interval (intervals.bootstrap_f1); fewer than 1,000 put the
    # interval's ends at a 2.5% quantile of too few draws to be stable
    bootstrap_resamples: Annotated[Int, Field(ge=1000, le=1_000_000)]


@dataclass(frozen=True, config=_CONFIG)
class ExportParams:
    model: Literal[("best", *reference.MODELS)]  # the model a user takes away: best on val, or a stage's (selection.py)
    flag_margin: Annotated[Float, Field(ge=0, le=1)]  # a model this far below the best val accuracy is flagged
    min_agreement: Annotated[Float, Field(ge=0, le=1)]  # below: the format is flagged (it still exports)
    max_accuracy_drop: Annotated[Float, Field(ge=0, le=1)]  # a format losing more test accuracy is flagged
    representative_images: Annotated[Int, Field(ge=1, le=10_000)]  # train images calibrating the int8 model
    int8_per_channel: StrictBool  # int8 weights per output channel (TFLite's default), else per tensor
    latency_warmup: Annotated[Int, Field(ge=0, le=10_000)]  # untimed calls before a format's latency is timed
    latency_runs: Annotated[Int, Field(ge=1, le=100_000)]  # timed single-image calls; their median is the latency


@dataclass(frozen=True, config=_CONFIG)
class AuditParams:
    """Suspected label errors, near-duplicates and outliers from the frozen base's features (stages/lib/audit.py)."""

    enabled: StrictBool  # off: the stage writes empty lists and metrics that say it was off
    folds: Annotated[Int, Field(ge=2, le=100)]  # cross-validation folds of the out-of-fold probabilities
    similarity_threshold: Annotated[Float, Field(gt=0, le=1)]  # cosine similarity from which two images are near
    whiten_components: Annotated[Int, Field(ge=0)]  # PCA-whitened dimensions the similarity is taken in; 0: none
    weak_judge_error: Annotated[Float, Field(gt=0, lt=1)]  # a judge wrong on more of the images out of fold is weak
    weak_judge_suspects: Annotated[Int, Field(ge=1)]  # a weak judge's list: its most suspicious images only
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
    def _arch_takes_its_image_size(self) -> Params:
        minimum = ARCHITECTURES[self.baseline.arch].min_size
        if self.baseline.image_size < minimum:
            raise ValueError(
                f"baseline.image_size: {self.baseline.arch} needs images of at least {minimum}x{minimum} px, got "
                f"{self.baseline.image_size}"
            )
        return self

    @model_validator(mode="after")
    def _base_takes_its_image_size(self) -> Params:
        base = BASES[self.model.base]
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
    return parse(params_file.read(path), str(path))


# Values in error messages, bounded: an alias bomb (nested *refs) expands to gigabytes when printed in full.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80


def all_keys(params: Params) -> set[str]:
    """Dotted names of every leaf key, e.g. {'seed', 'split.test_fraction', ...}."""
    return set(flatten(dataclasses.asdict(params)))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat
