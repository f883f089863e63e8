"""Shared fixtures: tiny image folders in the cats_and_dogs_filtered layout, made on the fly."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


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
                (root / folder / name / f"{name[:-1]}.{seed}.jpg").write_bytes(jpeg_bytes(seed))
    return root


@pytest.fixture
def raw_tree(tmp_path: Path) -> Path:
    return make_raw_tree(tmp_path / "raw")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working directory holding a copy of the real params.yaml."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def set_params(project: Path, **sections: dict) -> None:
    """Update sections of project/params.yaml, e.g. set_params(p, data={"source": "sample"})."""
    raw = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
