"""What the report stage reads, all of it before it draws anything, so a missing input fails fast and names the stage
that writes it: the metrics files, the training logs, the predictions, the audit's lists, the manifest,
params.yaml (credentials redacted) and the description of the transfer base's weights (model_origin.read). Nothing
after it reads a file but the images the figures show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stages.lib import audit, heads, model_origin, params_file, redaction, reference
from stages.lib.errors import require, rerun
from stages.lib.files import Metrics, read_metrics


def read_curves(live_dir: Path, stage: str) -> pd.DataFrame:
    """dvclive's per-epoch TSVs of one stage (train/<name>.tsv, eval/<name>.tsv), joined on `step` (0-based
    epoch): step, then <name> and val_<name> for the loss and every metric in heads.METRICS."""
    frame = None
    for name in ("loss", *heads.METRICS):
        for folder, column in (("train", name), ("eval", f"val_{name}")):
            path = require(Path(live_dir) / "plots" / "metrics" / folder / f"{name}.tsv", stage)
            table = pd.read_csv(path, sep="\t")
            if not {"step", name} <= set(table.columns):
                raise rerun(path, stage, f"expected the columns step and {name}, found {list(table.columns)}")
            table = table[["step", name]].rename(columns={name: column})
            frame = table if frame is None else frame.merge(table, on="step", how="outer")
    if frame.empty:
        raise rerun(live_dir, stage, "no epochs logged")
    return frame.sort_values("step").reset_index(drop=True)


def read_predictions(path: Path) -> pd.DataFrame:
    """evaluate's predictions.csv of one model; paths stay text whatever they read like."""
    return pd.read_csv(require(path, "evaluate"), dtype={"path": str}, keep_default_na=False)


def check_same_images(predictions: dict[str, pd.DataFrame], evaluation: Path) -> None:
    """Every model's predictions are of the same test images, each once: the report compares models image by image."""
    first, *others = predictions
    images = set(predictions[first]["path"])
    for model, frame in predictions.items():
        path = Path(evaluation) / model / "predictions.csv"
        if frame["path"].duplicated().any():
            raise rerun(path, "evaluate", f"{frame['path'][frame['path'].duplicated()].iloc[0]!r} is listed twice")
        if model != first and set(frame["path"]) != images:
            raise rerun(path, "evaluate", f"not the test images of {first}'s predictions")


@dataclass(frozen=True)
class AuditInputs:
    metrics: Metrics  # metrics/audit.json
    tables: dict[str, pd.DataFrame]  # audit.LABEL_ISSUES, ... as audit.read gives them


def read_audit(metrics_file: Path, folder: Path) -> AuditInputs:
    return AuditInputs(read_metrics(metrics_file, "audit"), audit.read(folder))


@dataclass(frozen=True)
class InputPaths:
    metrics: Path  # data.json, <model>.json, eval.json
    dvclive: Path  # <model>/plots/metrics/{train,eval}/*.tsv
    evaluation: Path  # <model>/predictions.csv
    records: Path  # meta.json (class names)
    raw: Path  # manifest.json and the images shown in the grid
    params: Path  # the whole params.yaml, for provenance
    audit: Path  # the audit stage's lists (label_issues.csv, ...)


@dataclass(frozen=True)
class Inputs:
    data: Metrics
    training: dict[str, Metrics]
    scores: Metrics
    export: Metrics
    curves: dict[str, pd.DataFrame]
    logs: dict[str, Path]  # per model: its stage's dvclive folder, where `curves` come from
    predictions: dict[str, pd.DataFrame]  # per model: path, label, probability, predicted
    class_names: list[str]
    manifest: Metrics
    params_text: str
    params: dict[str, Any]
    raw_dir: Path
    audit: AuditInputs
    base: model_origin.BaseWeights  # what the transfer base started from (model.weights), described


def read_inputs(paths: InputPaths) -> Inputs:
    """Read everything the report shows, failing early (before any figure) on the first missing input."""
    models = reference.MODELS
    data = read_metrics(paths.metrics / "split.json", "split")
    manifest = read_metrics(paths.raw / "manifest.json", "download")
    class_names = read_metrics(paths.records / "meta.json", "encode")["class_names"]
    training = {m: read_metrics(paths.metrics / f"{m}.json", m) for m in models}
    curves = {m: read_curves(paths.dvclive / m, m) for m in models}
    scores = read_metrics(paths.metrics / "eval.json", "evaluate")
    export = read_metrics(paths.metrics / "export.json", "export")
    predictions = {m: read_predictions(paths.evaluation / m / "predictions.csv") for m in models}
    check_same_images(predictions, paths.evaluation)
    params_text = redaction.redact(Path(paths.params).read_text(encoding="utf-8"))  # data.source may hold a password
    params = params_file.read(paths.params)
    sha256 = str(training["transfer"].values.get("weights.sha256", "unknown"))  # as the transfer stage recorded it
    base = model_origin.read(str(params["model"]["weights"]), sha256)
    return Inputs(
        data=data,
        training=training,
        scores=scores,
        export=export,
        curves=curves,
        logs={m: paths.dvclive / m for m in models},
        predictions=predictions,
        class_names=list(class_names),
        manifest=manifest,
        params_text=params_text,
        params=params,
        raw_dir=Path(paths.raw),
        audit=read_audit(paths.metrics / "audit.json", paths.audit),
        base=base,
    )
