"""Where a model's pretrained base came from, said once for the report (markdown.py) and the model card
(model_card.py): the weights `model.weights` names, and, for a base this project pretrained, the description
scripts/pretrain_base.py wrote beside its weights file (pretrained/*.json), quoted only when it describes these
very bytes (its sha256)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stages.lib import chance

IMAGENET = "imagenet"
RANDOM = "none"


def pretraining_description(weights: str) -> dict[str, Any] | None:
    """What scripts/pretrain_base.py wrote beside the weights file `weights` (model.weights), if it wrote one."""
    if weights in (IMAGENET, RANDOM):
        return None
    try:
        about = json.loads(Path(weights).with_suffix("").with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    is_ours = isinstance(about, dict) and about.get("weights") == Path(weights).name and "source_task" in about
    return about if is_ours else None


def base_origin(weights: str, weights_sha256: str, class_names: list[str]) -> list[str]:
    """Where the transfer base's weights came from, from the description scripts/pretrain_base.py wrote beside
    them, if there is one and it describes these very bytes; nothing for ImageNet's or random weights."""
    if weights in (IMAGENET, RANDOM):
        return []
    about = pretraining_description(weights)
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


def base_limits(weights: str, weights_sha256: str) -> str:
    """What the base's pretraining did not cover, in one line, from what is known of its weights."""
    if weights == IMAGENET:
        return (
            "ImageNet's weights (Keras Applications) were learnt on photos of ImageNet's 1,000 classes: images far "
            "from those (drawings, medical or satellite images, text) get less from them."
        )
    if weights == RANDOM:
        return "No pretraining: the base's weights are random, and a frozen random base transfers nothing."
    about = pretraining_description(weights)
    if about is None or about.get("sha256") != weights_sha256:
        return "What the base was pretrained on is not recorded: its limits are unknown."
    task = about["source_task"]
    return (
        f"It has seen only its source task's {task['train_images']:,} generated images (`{task['generator']}`) at "
        f"{about['settings']['size']} px: features learnt on them transfer less to other kinds of images, real "
        "photos above all, than ImageNet's weights do."
    )


# Where a user who lacks ImageNet's weights reads how to bring them (docs/datasets.md; tests hold the heading).
IMAGENET_OFFLINE_DOCS = "docs/datasets.md#imagenet-weights-on-an-offline-machine"


def weak_transfer_cause(weights: str, weights_sha256: str) -> str | None:
    """The known cause of transfer (and fine-tuning from it) scoring below the CNN trained from scratch, with what to
    try, or None when none is known: random weights, or a base this project pretrained on generated drawings meeting
    other images."""
    if weights == RANDOM:
        return chance.RANDOM_WEIGHTS
    about = pretraining_description(weights)
    if about is None or about.get("sha256") != weights_sha256:
        return None
    return (
        f"the base was pretrained by this project on {len(about['source_task']['classes'])} kinds of generated "
        "drawings, and its features tell drawings apart, not photos; with internet use model.weights: imagenet, "
        f"offline bring ImageNet's weights file ({IMAGENET_OFFLINE_DOCS})"
    )
