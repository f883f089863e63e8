"""Named datasets: the seeds' array datasets through the real keras.datasets loaders, written out as image folders;
offline they fail within seconds naming the file and where to put it."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages import encode as encode_stage
from stages import split as split_stage
from stages.lib import records, sources
from stages.lib.errors import PipelineError
from tests.conftest import ROOT, dvc_args, set_params

CLOSED = "http://127.0.0.1:9"  # nothing listens there: every request fails at once, online or not


def write_fashion_mnist(keras_home: Path, train: int = 30, test: int = 20) -> None:
    """Fashion-MNIST's four idx files, tiny, where keras.datasets.fashion_mnist looks for them (no hash is checked)."""
    folder = keras_home / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(8) + labels.tobytes()))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(16) + images.tobytes()))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, CLOSED)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


@pytest.mark.parametrize(("name", "file"), [("mnist", "mnist.npz"), ("cifar10", "cifar-10-python.tar.gz")])
def test_offline_a_keras_dataset_fails_within_seconds_saying_what_to_do(offline: Path, name: str, file: str):
    start = time.monotonic()
    with pytest.raises(PipelineError) as err:
        sources.fetch_keras_files(name)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert message.startswith(f"data.source: {name} needs {file} saved as {offline / 'datasets'}")
    assert "KERAS_HOME" in message and "local archive" in message


def test_cifar100_has_its_hundred_fine_labels_in_order():
    assert len(sources.CIFAR100) == 100 == len(set(sources.CIFAR100)) and sources.CIFAR100 == sorted(sources.CIFAR100)


def run_download(project: Path, keras_home: Path) -> None:
    """The download stage in a fresh process, as dvc runs it: Keras reads KERAS_HOME when it is imported."""
    env = {**os.environ, "KERAS_HOME": str(keras_home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "stages.download", *dvc_args("download")], cwd=project, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_download_stage_turns_fashion_mnist_into_rgb_records(offline: Path, project: Path):
    """Through the real keras.datasets loader: grayscale 28x28 images, 10 classes with a space and an underscore
    in their names, written as image folders, then split and encoded as RGB records."""
    write_fashion_mnist(offline, train=30, test=30)  # 3 held-out images a class: 1 for test at test_fraction 0.2
    set_params(project, data={"source": "fashion_mnist"}, encode={"image_size": 0})
    run_download(project, offline)
    raw = project / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["manifest.json", "train", "validation"]  # test/ is held out
    manifest = json.loads((raw / "manifest.json").read_text())
    assert (
        manifest["source"] == "fashion_mnist"
        and "datasets/fashion-mnist/train-images-idx3-ubyte.gz" in manifest["sha256"]
    )
    assert manifest["files"]["train/T-shirt_top"] == 3 and manifest["files"]["validation/Ankle boot"] == 3
    with Image.open(raw / "train" / "Trouser" / "00001.png") as image:
        assert image.size == (28, 28) and image.mode == "L"
    split_stage.main(dvc_args("split"))
    encode_stage.main(dvc_args("encode"))
    meta = records.read_meta(project / "data" / "tfrecords")
    assert meta["class_names"] == sorted(sources.KERAS_DATASETS["fashion_mnist"].class_names)
    dataset = records.make_dataset(project / "data" / "tfrecords", "train", image_size=32, batch_size=30)
    images, labels = next(iter(dataset))
    assert images.shape == (30, 32, 32, 3) and sorted(set(labels.numpy().tolist())) == list(range(10))
