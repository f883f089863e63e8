"""Shared fixtures: tiny image folders in the cats_and_dogs_filtered layout, made on the fly."""

from __future__ import annotations

import io
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import stages  # noqa: F401  (before any test imports TensorFlow: filters its start-up lines in this process too)

ROOT = Path(__file__).resolve().parents[1]


def dvc_args(stage: str) -> list[str]:
    """The stage's arguments exactly as dvc.yaml's command passes them (paths relative to the project root)."""
    command = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    return shlex.split(command)[3:]  # after `python -m stages.<stage>`


def jpeg_bytes(seed: int, size: tuple[int, int] = (40, 30), mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    """A small noisy image whose bytes differ for every seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def make_raw_tree(
    root: Path, train_per_class: int = 6, validation_per_class: int = 10, classes: tuple[str, ...] = ("cats", "dogs")
) -> Path:
    """root/train/<class>/*.jpg and root/validation/<class>/*.jpg with distinct, valid images."""
    seed = 0
    for folder, count in (("train", train_per_class), ("validation", validation_per_class)):
        for name in classes:
            (root / folder / name).mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                seed += 1
                (root / folder / name / f"{name[:-1] or name}.{seed}.jpg").write_bytes(jpeg_bytes(seed))
    return root


@pytest.fixture
def raw_tree(tmp_path: Path) -> Path:
    return make_raw_tree(tmp_path / "raw")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory holding a copy of the real params.yaml and corrections.csv."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(ROOT / "corrections.csv", tmp_path / "corrections.csv")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def set_params(project: Path, **sections: dict) -> None:
    """Update sections of project/params.yaml, e.g. set_params(p, data={"source": "sample"})."""
    raw = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))


TINY_TRAINING = {
    "encode": {"image_size": 32, "examples_per_shard": 8},
    "baseline": {"image_size": 32, "epochs": 2, "batch_size": 8},
    "model": {"weights": "none", "image_size": 32},
    "transfer": {"epochs": 2, "batch_size": 8},
    "finetune": {"epochs": 2, "batch_size": 8},
}


THREE_CLASSES = ("birds", "cats", "dogs")
NO_AUGMENTATION = {"flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "contrast": 0.0, "brightness": 0.0}


def build_encoded_project(root: Path, classes: tuple[str, ...] = ("cats", "dogs"), **overrides: dict) -> Path:
    """root/ with params.yaml (tiny training settings), data/raw, data/splits and data/tfrecords at 32 px."""
    from stages import encode, split

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    set_params(root, **TINY_TRAINING)
    if overrides:
        set_params(root, **overrides)
    make_raw_tree(root / "data" / "raw", train_per_class=8, validation_per_class=6, classes=classes)
    common = ["--params", str(root / "params.yaml"), "--raw", str(root / "data" / "raw")]
    metrics = ["--metrics", str(root / "metrics" / "data.json"), "--details", str(root / "metrics" / "split.json")]
    shutil.copy(ROOT / "corrections.csv", root / "corrections.csv")  # the project's: no corrections
    split.main(
        [*common, "--corrections", str(root / "corrections.csv"), "--out", str(root / "data" / "splits"), *metrics]
    )
    encode.main([*common, "--splits", str(root / "data" / "splits"), "--out", str(root / "data" / "tfrecords")])
    return root


def stage_args(root: Path, stage: str) -> list[str]:
    """The output arguments of a training stage, all inside root/."""
    return [
        "--params", str(root / "params.yaml"),
        "--records", str(root / "data" / "tfrecords"),
        "--model", str(root / "models" / f"{stage}.keras"),
        "--logs", str(root / "dvclive" / stage),
        "--metrics", str(root / "metrics" / f"{stage}.json"),
        "--val-metrics", str(root / "metrics" / "val" / f"{stage}.json"),
        "--checkpoints", str(root / "models" / "checkpoints" / stage),
    ]  # fmt: skip


def calibrated_base_weights(path: Path, size: int = 32) -> Path:
    """MobileNetV2 weights whose BatchNorm statistics fit noise images, saved where model.weights can load them.

    With Keras' initial BatchNorm statistics (mean 0 / variance 1) the signal fades through the 17 blocks
    and the tiny model gives the same logit for every image, so no comparison of probabilities would mean
    anything. models.calibrate_batchnorm over noise in [-1, 1] (MobileNetV2's input range) sets each
    BatchNorm's moving statistics to that batch's, and the outputs differ from image to image: the same
    calibration the transfer stage does on train images with model.weights: none, here as a fixed file.
    """
    from stages.lib import models

    base = models.build_base("mobilenet_v2", size, None)
    noise = np.random.default_rng(0).uniform(-1, 1, (64, size, size, 3)).astype(np.float32)
    models.calibrate_batchnorm(base, noise)
    base.save_weights(path)
    return path


def build_trained_project(
    root: Path, *, with_finetune: bool = True, classes: tuple[str, ...] = ("cats", "dogs")
) -> Path:
    """An encoded tiny project trained by the real stages for 1 epoch each: models/transfer.keras (and
    models/finetune.keras), on calibrated random weights. The default augmentation (flip, rotation) is on."""
    root.mkdir(parents=True, exist_ok=True)
    weights = calibrated_base_weights(root / "base.weights.h5")
    build_encoded_project(
        root, classes, model={"weights": str(weights)}, transfer={"epochs": 1}, finetune={"epochs": 1}
    )
    from stages import finetune, transfer

    transfer.main(stage_args(root, "transfer"))
    if with_finetune:
        finetune.main(stage_args(root, "finetune") + ["--transfer-model", str(root / "models" / "transfer.keras")])
    return root


# The review page runs in the system's Chromium (Debian's package: apt-get install chromium; `make browser`),
# driven by Playwright: its own browser download is unreachable offline. The flags are those a sandboxed, offline
# root session needs; without the background-networking ones Chromium tries Google's hosts at every start.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def chromium_path() -> str:
    """The system's Chromium; a missing one fails the test that needs it (CI must run it), saying how to get it."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("no Chromium for the browser test: apt-get install chromium (make browser), or set CHROMIUM")
    return found


@pytest.fixture
def browser_page(tmp_path: Path):
    """A Playwright page in headless Chromium, downloads allowed; console errors collected in page.errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
        yield page
        context.close()
        browser.close()


def flipped_sample_archive(path: Path, *, train_per_class: int, validation_per_class: int, every: int) -> set[str]:
    """The sample archive (cats and dogs, seed 0) with every `every`-th regular image filed under the other class,
    its name kept: cat.17.jpg in dogs/ is a cat labelled dog. Returns the flipped images' paths as data/raw and the
    split lists name them (train/dogs/cat.17.jpg)."""
    import zipfile

    from stages.lib.sample import REGULAR, plan_sample_archive, sample_archive_bytes

    settings = dict(seed=0, train_per_class=train_per_class, validation_per_class=validation_per_class, classes=2)
    plan = plan_sample_archive(**settings)
    copied = {member.source for member in plan if member.source}  # a duplicate's original: flipping it is a conflict
    regular = sorted(m.arcname for m in plan if m.kind == REGULAR and m.arcname not in copied)
    flipped = {name: name.replace("/cats/", "/@/").replace("/dogs/", "/cats/").replace("/@/", "/dogs/")
               for name in regular[::every]}  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(sample_archive_bytes(**settings))) as source, zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            info.filename = flipped.get(info.filename, info.filename)
            out.writestr(info, data)
    return {name.split("/", 1)[1] for name in flipped.values()}


def write_manifest(root: Path) -> Path:
    """data/raw/manifest.json as the download stage writes it, for a project whose raw tree a test made itself."""
    import json

    raw = root / "data" / "raw"
    counts = {f.relative_to(raw).as_posix(): len(list(f.iterdir())) for f in sorted(raw.glob("*/*")) if f.is_dir()}
    manifest = {"source": "tests", "archive": "made by tests/conftest.py", "sha256": "ab" * 32, "files": counts,
                "ignored": {}}  # fmt: skip
    (raw / "manifest.json").write_text(json.dumps(manifest))
    return raw / "manifest.json"


MODELS = ("baseline", "transfer", "finetune")


def export_args(root: Path, audit_metrics: Path | None = None) -> list[str]:
    """The export stage's arguments, every path inside root/."""
    return [
        "--params", str(root / "params.yaml"),
        *(arg for m in MODELS for arg in ("--model", str(root / "models" / f"{m}.keras"))),
        "--training-metrics", str(root / "metrics"),
        "--records", str(root / "data" / "tfrecords"),
        "--raw", str(root / "data" / "raw"),
        "--split-metrics", str(root / "metrics" / "split.json"),
        "--audit-metrics", str(audit_metrics or root / "metrics" / "audit.json"),
        "--out", str(root / "models" / "export"),
        "--metrics", str(root / "metrics" / "export.json"),
    ]  # fmt: skip


def run_audit(root: Path) -> Path:
    """The real audit stage on root/ (its metrics are what the model card summarises)."""
    from stages import audit

    audit.main([
        "--params", str(root / "params.yaml"), "--records", str(root / "data" / "tfrecords"),
        "--splits", str(root / "data" / "splits"), "--raw", str(root / "data" / "raw"),
        "--out", str(root / "reports" / "audit"), "--metrics", str(root / "metrics" / "audit.json"),
    ])  # fmt: skip
    return root / "metrics" / "audit.json"


def card_snippets(card: str) -> list[str]:
    """The Python blocks of a model card, in order."""
    import re

    return re.findall(r"```python\n(.*?)\n```", card, re.S)


def run_card_snippets(export_dir: Path, image: bytes, tmp: Path) -> list[tuple[str, float]]:
    """Every load snippet of export_dir/MODEL_CARD.md, each after the first, in a fresh Python in a copy of the export
    folder holding `image` as the card's example photo: (label, probability) each printed, in the card's order; the
    TFLite one once per .tflite file (the card says: the same, with that file's name)."""
    import os
    import subprocess
    import sys

    from stages.lib import model_card

    folder = tmp / "card"
    shutil.copytree(export_dir, folder)
    (folder / model_card.EXAMPLE_IMAGE).write_bytes(image)
    first, *others = card_snippets((folder / model_card.CARD_FILE).read_text())
    programs = []
    for snippet in others:
        if "model_int8.tflite" in snippet:
            programs += [snippet.replace("model_int8.tflite", f.name) for f in sorted(folder.glob("*.tflite"))]
        else:
            programs.append(snippet)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    printed = []
    for program in programs:
        done = subprocess.run([sys.executable, "-c", first + "\n" + program], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        label, probability = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
        printed.append((label, float(probability)))
    return printed
