"""Where a model's pretrained base came from, said once for the report (markdown.py), the model card (model_card.py),
export's flags and the transfer stage's note: the weights `model.weights` names, and, for a base this project
pretrained, the description scripts/pretrain_base.py wrote beside its weights file (pretrained/*.json), quoted only
when it describes these very bytes (its sha256). `read` is the one place that file is read: a stage reads it with its
other inputs (report_inputs.py, export), and everything else here is said from what it read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.lib import chance

IMAGENET = "imagenet"
RANDOM = "none"


@dataclass(frozen=True)
class BaseWeights:
    """The weights a transfer base started from: `model.weights` as given, the sha256 the transfer stage recorded of
    them, and what scripts/pretrain_base.py wrote beside the file (None for imagenet, none, or a file without it)."""

    weights: str
    sha256: str
    description: dict[str, Any] | None

    @property
    def described(self) -> dict[str, Any] | None:
        """The description when it is of these very bytes, else None."""
        about = self.description
        return about if about is not None and about.get("sha256") == self.sha256 else None


def read(weights: str, sha256: str) -> BaseWeights:
    """`weights` (model.weights) with the description beside its file, if scripts/pretrain_base.py wrote one."""
    return BaseWeights(weights, sha256, _description(weights))


def _description(weights: str) -> dict[str, Any] | None:
    if weights in (IMAGENET, RANDOM):
        return None
    try:
        about = json.loads(Path(weights).with_suffix("").with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    is_ours = isinstance(about, dict) and about.get("weights") == Path(weights).name and "source_task" in about
    return about if is_ours else None


def base_origin(base: BaseWeights, class_names: list[str]) -> list[str]:
    """Where the transfer base's weights came from, from the description scripts/pretrain_base.py wrote beside
    them, if there is one and it describes these very bytes; nothing for ImageNet's or random weights."""
    weights, weights_sha256, about = base.weights, base.sha256, base.description
    if weights in (IMAGENET, RANDOM):
        return []
    if about is None:
        return [
            f"The base starts from the weights file `{weights}` (sha256 `{weights_sha256}`), described nowhere.",
            "",
        ]
    if about.get("sha256") != weights_sha256:
        return [
            f"The description beside `{weights}` is of other bytes than this run's (sha256 `{weights_sha256}`).",
            "",
        ]
    task = about["source_task"]
    classes, never = ", ".join(task["classes"]), ", ".join(task["excluded_target_classes"])
    shared = sorted(set(task["classes"]) & set(class_names))
    overlap = ""
    if shared:
        overlap = (
            f" This run's classes {', '.join(shared)} were among its source classes: the base has seen their kind "
            "before, so this is not a transfer to new classes."
        )
    return [
        f"The base is `{weights}`: {about['base']}, pretrained by `scripts/pretrain_base.py` on a source task of "
        f"{len(task['classes'])} other classes ({classes}; never {never}), {task['train_images']:,} images, "
        f"{about['settings']['epochs']} epochs, {about['seconds'] / 60:.0f} min; {about['held_out_accuracy']:.1%} "
        f"accuracy on {task['held_out_images']:,} held-out source images. sha256 `{weights_sha256}`.{overlap}",
        "",
    ]


def base_limits(base: BaseWeights) -> str:
    """What the base's pretraining did not cover, in one line, from what is known of its weights."""
    if base.weights == IMAGENET:
        return (
            "ImageNet's weights (Keras Applications) were learnt on photos of ImageNet's 1,000 classes: images far "
            "from those (drawings, medical or satellite images, text) get less from them."
        )
    if base.weights == RANDOM:
        return "No pretraining: the base's weights are random, and a frozen random base transfers nothing."
    about = base.described
    if about is None:
        return "What the base was pretrained on is not recorded: its limits are unknown."
    task = about["source_task"]
    return (
        f"It has seen only its source task's {task['train_images']:,} generated images (`{task['generator']}`) at "
        f"{about['settings']['size']} px: features learnt on them transfer less to other kinds of images, real "
        "photos above all, than ImageNet's weights do."
    )


# Where a user who lacks ImageNet's weights reads how to bring them (docs/datasets.md; tests hold the heading).
IMAGENET_OFFLINE_DOCS = "docs/datasets.md#imagenet-weights-on-an-offline-machine"


def weak_transfer_cause(base: BaseWeights) -> str | None:
    """The known cause of transfer (and fine-tuning from it) scoring below the CNN trained from scratch, with what to
    try, or None when none is known: random weights, or a base this project pretrained on generated drawings meeting
    other images."""
    if base.weights == RANDOM:
        return chance.RANDOM_WEIGHTS
    about = base.described
    if about is None:
        return None
    return (
        f"the base was pretrained by this project on {len(about['source_task']['classes'])} kinds of generated "
        "drawings, and its features tell drawings apart, not photos; with internet use model.weights: imagenet, "
        f"offline bring ImageNet's weights file ({IMAGENET_OFFLINE_DOCS})"
    )
