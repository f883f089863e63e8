"""The named datasets `data.source` accepts besides `sample`, URLs and local archives.

Archives by public URL: `cats_and_dogs_filtered` (the reference) and `hotdog` (the hot-dog / not-hot-dog
folders of the seeds' ResNet50 fine-tuning: train/ + test/). The seeds' array datasets come through the real
`keras.datasets` loaders and are written out as image folders (train/ + test/, one PNG per image):
`mnist`, `fashion_mnist`, `cifar10`, `cifar100` (fine labels).

Offline, a loader would hang in urllib: each file is first fetched into Keras' cache with the project's
downloader (short timeouts), so the stage fails within seconds naming the file and the folder to put it in.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stages.lib import files
from stages.lib.errors import PipelineError
from stages.lib.fetch import DownloadError, download, keras_home

KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# Here, not in reference.py, so that the download stage depends on no reference figure (tests/test_reference.py
# holds reference.DATASET to this table).
ARCHIVES = {
    "cats_and_dogs_filtered": "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
    "hotdog": "http://d2l-data.s3-accelerate.amazonaws.com/hotdog.zip",
}

CIFAR100 = (  # the fine label names, by label index
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()


@dataclass(frozen=True)
class KerasDataset:
    load: Callable[[], tuple]  # keras.datasets.<name>.load_data, imported when called
    files: tuple[tuple[str, str], ...]  # (URL, where keras.utils.get_file keeps it under $KERAS_HOME)
    class_names: tuple[str, ...]  # by label index; folder names, so no "/"


def _loader(name: str, **kwargs) -> Callable[[], tuple]:
    def load():
        import keras  # here: only these sources need it, and importing it takes seconds

        return getattr(keras.datasets, name).load_data(**kwargs)

    return load


_FASHION_FILES = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                  "t10k-images-idx3-ubyte.gz")  # fmt: skip
KERAS_DATASETS = {
    "mnist": KerasDataset(
        _loader("mnist"), ((KERAS_DATASETS_URL + "mnist.npz", "datasets/mnist.npz"),), tuple(str(d) for d in range(10))
    ),
    "fashion_mnist": KerasDataset(
        _loader("fashion_mnist"),
        tuple((KERAS_DATASETS_URL + name, f"datasets/fashion-mnist/{name}") for name in _FASHION_FILES),
        ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": KerasDataset(
        _loader("cifar10"),
        (("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "datasets/cifar-10-batches-py-target_archive"),),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    "cifar100": KerasDataset(
        _loader("cifar100", label_mode="fine"),
        (("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "datasets/cifar-100-python-target_archive"),),
        tuple(CIFAR100),
    ),
}
NAMES = (*ARCHIVES, *KERAS_DATASETS)


def fetch_keras_files(name: str) -> list[Path]:
    """Every file of a Keras dataset in Keras' cache, downloaded first with short timeouts where missing."""
    paths = []
    for url, relative in KERAS_DATASETS[name].files:
        target = keras_home() / relative
        if not target.is_file():
            try:
                download(url, target, retries=1)
            except DownloadError:
                raise PipelineError(
                    f"data.source: {name} needs {url.rsplit('/', 1)[1]} saved as {target}, and it could not be "
                    f"downloaded from {url}. Download it elsewhere and copy it there (or set KERAS_HOME), or set "
                    "data.source to a local archive of image folders."
                ) from None
        paths.append(target)
    return paths


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=False)  # grayscale stays grayscale: encode converts
    return out.getvalue()


def write_keras_dataset(name: str, out: Path) -> dict[str, int]:
    """Load a Keras dataset (its files already in the cache) and write out/{train,test}/<class>/<index>.png.
    Returns the image count per folder."""
    dataset = KERAS_DATASETS[name]
    (x_train, y_train), (x_test, y_test) = dataset.load()
    counts: dict[str, int] = {}
    for split, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        labels = np.asarray(labels).reshape(-1)
        for index, class_name in enumerate(dataset.class_names):
            (out / split / class_name).mkdir(parents=True, exist_ok=True)
            counts[f"{split}/{class_name}"] = int((labels == index).sum())

        def write(i: int, images=images, labels=labels, split=split) -> None:
            path = out / split / dataset.class_names[int(labels[i])] / f"{i:05d}.png"
            path.write_bytes(_png(images[i]))

        with ThreadPoolExecutor(max_workers=4) as pool:  # zlib and Pillow release the GIL
            list(pool.map(write, range(len(labels))))
    return counts


def keras_files_sha256(name: str) -> dict[str, str]:
    return {relative: files.sha256_file(keras_home() / relative) for _, relative in KERAS_DATASETS[name].files}
