"""The predict CLI on a tiny trained model: output formats, per-file errors, exit codes, threshold, batching."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from stages import predict
from stages.lib import heads, prediction, saving
from stages.lib.images import load_for_model
from tests.conftest import ROOT, build_trained_project, jpeg_bytes

# Tests of a model the real transfer stage trained (the module's `project`) are slow; the others, of the command's
# options, inputs and model files, run in the fast tier.
trained = pytest.mark.slow

GOOD = ["a.jpg", "b.jpg", "sub/gray.jpg", "sub/photo.png"]  # sorted order of the folder walk
BAD = {  # name -> how its error line starts after the path, in the order the files are read
    "huge.jpg": "4,294,967,296 bytes is far too many for a 60x45 image",  # judged from its header, never read
    "notes.jpg": "not an image (no format Pillow can read)",
    "truncated.jpg": "cannot decode the image: ",
    "zero.jpg": "zero-byte file",
}
# Skipped in a folder, as extraction skips them in an archive (file_names.left_out): one rule for both.
HIDDEN = [".DS_Store", ".cache/c.jpg", "Thumbs.db", "sub/desktop.ini", "__MACOSX/._a.jpg"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The transfer model only: it has the finetune model's layers (augmentation included) and saves 10 s.
    return build_trained_project(tmp_path_factory.mktemp("predict"), with_finetune=False)


@pytest.fixture(scope="module")
def model_path(project: Path) -> Path:
    return project / "models" / "transfer.keras"


@pytest.fixture(scope="module")
def model(model_path: Path) -> keras.Model:
    return saving.load_model(model_path)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good images (RGB JPEGs, a grayscale JPEG, a PNG), bad files and hidden files, in nested folders."""
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "sub").mkdir()
    (folder / ".cache").mkdir()
    (folder / "__MACOSX").mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(1, size=(60, 45)))
    (folder / "b.jpg").write_bytes(jpeg_bytes(2, size=(30, 50)))
    (folder / "sub" / "gray.jpg").write_bytes(jpeg_bytes(3, mode="L"))
    (folder / "sub" / "photo.png").write_bytes(jpeg_bytes(4, fmt="PNG"))
    (folder / "notes.jpg").write_text("not a photo\n")
    (folder / "truncated.jpg").write_bytes(jpeg_bytes(5, size=(200, 150))[:600])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "huge.jpg").write_bytes(jpeg_bytes(1, size=(60, 45)))
    os.truncate(folder / "huge.jpg", 4 << 30)  # sparse: 4 GiB that take no disk
    for name in HIDDEN:
        (folder / name).write_bytes(b"hidden")
    return folder


class CountingModel:
    """The loaded Keras model as predict holds any model (serving.Served), counting its calls: tests skip the 3 s
    load and can see how the CLI batches."""

    def __init__(self, model: keras.Model, path: Path):
        self.model, self.path, self.batches = model, path, []
        self.size = model.input_shape[1:3]

    def predict(self, images):
        self.batches.append(len(images))
        return heads.probabilities(self.model(images, training=False).numpy())


@pytest.fixture
def counting(model: keras.Model, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> CountingModel:
    """Stands in for the model that `--model <model_path>` loads (the file must still exist)."""
    counting = CountingModel(model, model_path)
    monkeypatch.setattr(prediction, "load_model", lambda path, classes, tta="none": counting)
    return counting


def run(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str, list[str]]:
    code = predict.main(argv)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def assert_error_lines(lines: list[str], expected: list[tuple[Path, str]]) -> None:
    """Exactly one `error: <path>: <reason>` line per expected file, in order, and no other line."""
    assert len(lines) == len(expected), lines
    for line, (path, reason) in zip(lines, expected):
        assert line.startswith(f"error: {path}: {reason}"), line


def direct_probabilities(model: keras.Model, paths: list[Path]) -> np.ndarray:
    """The model called directly on the arrays the CLI preprocesses, in the CLI's batches: p(class 1).

    Same batches, because float32 results move by ~1e-6 with the batch size (other kernel blocking).
    """
    size = model.input_shape[1]
    images = np.stack([load_for_model(p.read_bytes(), size) for p in paths])
    logits = [model(batch, training=False).numpy() for batch in prediction.chunks(images, prediction.BATCH_SIZE)]
    return heads.probabilities(np.concatenate(logits))[:, 1]


def parse(out: str, fmt: str) -> list[dict]:
    """Rows of any output format as dicts of strings and floats."""
    if fmt == "json":
        return json.loads(out)
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
    else:
        model, header, *lines = out.splitlines()
        assert model.startswith("model: ") and header.split() == ["path", "label", "probability", "p_dogs"]
        rows = [dict(zip(header.split(), line.split())) for line in lines]
    return [{**row, "probability": float(row["probability"]), "p_dogs": float(row["p_dogs"])} for row in rows]


@trained
@pytest.mark.parametrize("fmt", prediction.FORMATS)
def test_mixed_folder_gives_rows_for_images_and_one_error_line_per_bad_file(
    fmt, mixed, model, model_path, counting, capsys
):
    missing = mixed / "missing.jpg"
    argv = [str(mixed), str(mixed / "a.jpg"), str(missing), "--model", str(model_path), "--classes", "cats,dogs"]
    argv += ["--format", fmt]
    code, out, err = run(capsys, argv)
    assert code == 1
    assert_error_lines(err, [(missing, "no such file or directory")] + [(mixed / n, r) for n, r in BAD.items()])
    rows = parse(out, fmt)
    paths = [mixed / name for name in GOOD] + [mixed / "a.jpg"]
    assert [row["path"] for row in rows] == [str(p) for p in paths]  # hidden files skipped, folder sorted
    expected = direct_probabilities(model, paths)
    decimals = 4 if fmt == "table" else 6
    # Half a unit of the printed decimals, plus float32 noise between calls.
    assert [row["p_dogs"] for row in rows] == pytest.approx(expected, abs=10**-decimals)
    for row in rows:
        assert row["label"] == ("dogs" if row["p_dogs"] >= 0.5 else "cats")
        assert row["probability"] == pytest.approx(
            row["p_dogs"] if row["label"] == "dogs" else 1 - row["p_dogs"], abs=1.1 * 10**-decimals
        )
    assert counting.batches == [len(paths)]  # one model call for the whole (small) input


@trained
def test_all_good_exits_0_batches_by_32_and_reads_classes_from_meta(
    project, model, model_path, counting, capsys, tmp_path
):
    for i in range(40):
        (tmp_path / f"img{i:02d}.jpg").write_bytes(jpeg_bytes(100 + i, size=(50 + i, 40)))
    argv = [str(tmp_path), "--model", str(model_path), "--records", str(project / "data" / "tfrecords")]
    argv += ["--format", "json"]
    code, out, err = run(capsys, argv)
    assert code == 0 and err == []
    rows = json.loads(out)
    assert list(rows[0]) == ["path", "label", "probability", "p_dogs", "model"]  # class names from meta.json
    assert {row["model"] for row in rows} == {str(model_path)}  # the file that ran
    expected = direct_probabilities(model, sorted(tmp_path.glob("*.jpg")))
    assert [row["p_dogs"] for row in rows] == pytest.approx(expected, abs=2e-6)  # 6 decimals + float32 noise
    assert counting.batches == [32, 8]
    assert expected.std() > 0.05  # different images get different probabilities: the comparison means something


@trained
def test_label_follows_the_threshold(mixed, model, model_path, counting, capsys):
    paths = [mixed / name for name in GOOD]
    probabilities = direct_probabilities(model, paths)
    threshold = float(np.median(probabilities))  # half the images on each side
    argv = [*map(str, paths), "--model", str(model_path), "--classes", "cats,dogs", "--format", "csv"]
    argv += ["--threshold", f"{threshold}"]
    code, out, _ = run(capsys, argv)
    assert code == 0
    labels = [row["label"] for row in parse(out, "csv")]
    assert labels == ["dogs" if p >= threshold else "cats" for p in probabilities]
    assert set(labels) == {"cats", "dogs"}


def test_missing_model_is_exit_2_and_one_line(mixed, tmp_path, capsys):
    code, out, err = run(capsys, [str(mixed), "--model", str(tmp_path / "finetune.keras"), "--classes", "cats,dogs"])
    assert code == 2 and out == ""
    assert err == [
        f"error: {tmp_path / 'finetune.keras'}: missing (train and export it first, dvc repro; or pass --model)"
    ]


def test_every_missing_input_is_named_at_once_with_the_demo_s_model(mixed, tmp_path, capsys, monkeypatch):
    """Seen on the landed main: after `make demo`, predict from the project root said meta.json was missing, then,
    once given, that the model was, one at a time, never mentioning demo/."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, [str(mixed)])
    assert code == 2 and out == ""
    assert err == [
        "error: models/export/model.keras: missing (train and export it first, dvc repro; or pass --model); "
        "data/tfrecords/meta.json: missing (or pass the class names, class 0 first, e.g. --classes cats,dogs)"
    ]
    (tmp_path / "demo" / "models" / "export").mkdir(parents=True)
    (tmp_path / "demo" / "models" / "export" / "model.keras").write_bytes(b"a demo's model")
    code, _, err = run(capsys, [str(mixed)])
    assert code == 2 and err[0].endswith(
        "; a demo run's model is demo/models/export/model.keras, with its labels: pass --model "
        "demo/models/export/model.keras"
    )


@trained
def test_the_exported_model_s_labels_come_from_beside_it(mixed, model_path, tmp_path, counting, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.keras").write_bytes(model_path.read_bytes())
    (export / "labels.txt").write_text("None\ncafé\n")  # names as the export stage writes them, one per line
    code, out, _ = run(capsys, [str(mixed / "a.jpg"), "--model", str(export / "model.keras"), "--format", "json"])
    assert code == 0 and json.loads(out)[0]["label"] in ("None", "café") and "p_café" in json.loads(out)[0]


def test_a_file_that_is_not_a_model_is_exit_2_and_one_line(mixed, tmp_path, capsys):
    (tmp_path / "broken.keras").write_text("not a model")
    code, out, err = run(capsys, [str(mixed), "--model", str(tmp_path / "broken.keras"), "--classes", "a,b"])
    assert code == 2 and out == "" and len(err) == 1
    assert err[0].startswith(f"error: {tmp_path / 'broken.keras'}: not a readable Keras model (")


def test_a_damaged_model_file_is_named_as_unreadable_with_what_to_do(mixed, tmp_path, capsys):
    """Seen by a new user (issue 33): a corrupt model file was reported with Keras' "File not found", though it was
    there."""
    whole = tmp_path / "whole.keras"
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inputs))).save(whole)
    damaged = tmp_path / "model.keras"
    damaged.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # cut short, as by an interrupted copy
    code, out, err = run(capsys, [str(mixed), "--model", str(damaged), "--classes", "cats,dogs"])
    assert code == 2 and out == ""
    assert err == [
        f"error: {damaged}: not a readable Keras model (a .keras file is a zip archive, and this one is not "
        f"(truncated, or another kind of file)); {prediction.WHAT_TO_DO_WITH_A_BAD_MODEL}"
    ]
    assert (
        "export it again" in prediction.WHAT_TO_DO_WITH_A_BAD_MODEL
        and "--model" in prediction.WHAT_TO_DO_WITH_A_BAD_MODEL
    )


@trained
def test_dangling_symbolic_links_are_named_and_counted_like_other_skips(model_path, tmp_path, counting, capsys):
    """Seen by a new user (issue 33): a link whose target was gone was skipped without a word."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg_bytes(1))
    (folder / "sub" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (folder / ".hidden.jpg").symlink_to(tmp_path / "deleted.jpg")  # hidden: skipped as extraction skips it
    given = tmp_path / "given.jpg"
    given.symlink_to(tmp_path / "also_deleted.jpg")
    code, out, err = run(capsys, [str(given), str(folder), "--model", str(model_path), "--classes", "cats,dogs"])
    assert code == 1  # not every file was classified
    assert err == [
        f"error: {given}: a symbolic link to {tmp_path / 'also_deleted.jpg'}, which does not exist",
        f"error: {folder / 'sub' / 'gone.jpg'}: a symbolic link to {tmp_path / 'deleted.jpg'}, which does not exist",
    ]
    assert [line.split()[0] for line in out.splitlines()[2:]] == [str(folder / "a.jpg")]


@trained
@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_a_dash_prints_its_error_line_and_no_empty_table(model_path, tmp_path, counting, capsys, monkeypatch, fmt):
    """Seen by a new user (issue 33): `predict -` printed an empty table header after its error. CSV and JSON stay
    documents a script can read, without rows."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, ["-", "--model", str(model_path), "--classes", "cats,dogs", "--format", fmt])
    assert code == 1
    assert err == [
        "error: -: no such file; predict reads the paths given as arguments, not standard input (for a list of "
        "paths in a file: xargs -d '\\n' imagefolder-predict < paths.txt)"
    ]
    assert out == {"table": "", "csv": "path,label,probability,p_dogs,model\n", "json": "[]\n"}[fmt]
    assert counting.batches == []


@pytest.mark.parametrize(
    "shape", [(32, 32, 1), (32, 32, 4), (10,), (None, None, 3)], ids=["grayscale", "rgba", "vector", "any-size"]
)
def test_a_model_whose_input_is_not_rgb_images_is_exit_2_and_one_line(mixed, tmp_path, capsys, shape):
    """Seen on the landed main: a grayscale, RGBA or vector-input model printed a 67-line traceback and exited 1."""
    inputs = keras.Input(shape)
    flat = keras.layers.GlobalAveragePooling2D()(inputs) if len(shape) == 3 else inputs
    path = tmp_path / "other.keras"
    keras.Model(inputs, keras.layers.Dense(1)(flat)).save(path)
    code, out, err = run(capsys, [str(mixed), "--model", str(path), "--classes", "cats,dogs"])
    assert code == 2 and out == ""
    assert err == [
        f"error: {path}: its input has shape {(None, *shape)}, not images of a fixed height x width x 3 (RGB), which "
        "are what this project feeds a model; pass a model trained by this pipeline"
    ]


def test_a_model_of_any_height_and_width_gets_images_of_its_shape(mixed, tmp_path, capsys):
    inputs = keras.Input((24, 40, 3))
    path = tmp_path / "wide.keras"
    keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inputs))).save(path)
    code, out, _ = run(capsys, [str(mixed / "a.jpg"), "--model", str(path), "--classes", "cats,dogs"])
    assert code == 0 and "a.jpg" in out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--records", "nowhere"], "error: nowhere/meta.json: missing (or pass the class names"),
        (["--classes", "cats"], "error: --classes: need at least two distinct class names"),
        (["--classes", "cats,dogs", "--threshold", "1.5"], "error: --threshold: must be between 0 and 1"),
    ],
)
def test_usage_errors_are_exit_2_and_one_line(mixed, tmp_path, capsys, options, message):
    model_path = tmp_path / "model.keras"
    model_path.write_bytes(b"never loaded: the options are refused first")
    code, out, err = run(capsys, [str(mixed), "--model", str(model_path), *options])
    assert code == 2 and out == "" and len(err) == 1 and err[0].startswith(message)


@trained
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_as_a_command_stderr_holds_only_the_error_lines(mixed, model_path, tmp_path, onednn):
    """The real entry point in a fresh process: model loading, TensorFlow's start-up lines (printed only with
    oneDNN on, which is the default on some CPUs and not on others), exit status."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_ENABLE_ONEDNN_OPTS": onednn}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # importing stages sets it
    env.pop("PIPELINE_VERBOSE", None)
    argv = [sys.executable, "-m", "stages.predict", str(mixed), "--model", str(model_path), "--classes", "cats,dogs"]
    done = subprocess.run(argv + ["--format", "json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert_error_lines(done.stderr.splitlines(), [(mixed / n, r) for n, r in BAD.items()])  # nothing else, no traceback
    assert [row["path"] for row in json.loads(done.stdout)] == [str(mixed / name) for name in GOOD]


@trained
def test_a_file_name_with_a_newline_stays_on_one_row_and_one_error_line(model_path, tmp_path, counting, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "two\nlines.jpg").write_bytes(jpeg_bytes(3))
    (folder / "bad\rname.jpg").write_text("not an image")
    code, out, err = run(capsys, [str(folder), "--model", str(model_path), "--classes", "cats,dogs"])
    assert code == 1
    table = out.splitlines()
    assert len(table) == 3 and "two\\nlines.jpg" in table[2]  # the model, the header and one row
    assert err == [f"error: {folder}/bad\\rname.jpg: not an image (no format Pillow can read)"]


@trained
def test_tta_flip_averages_each_image_with_its_mirror(mixed, model, model_path, capsys):
    paths = [mixed / name for name in GOOD]
    argv = [*map(str, paths), "--model", str(model_path), "--classes", "cats,dogs", "--format", "json", "--tta", "flip"]
    code, out, _ = run(capsys, argv)
    assert code == 0
    size = model.input_shape[1]
    images = np.stack([load_for_model(p.read_bytes(), size) for p in paths])
    plain, mirrored = (
        heads.probabilities(model(x, training=False).numpy())[:, 1] for x in (images, images[:, :, ::-1])
    )
    assert [row["p_dogs"] for row in parse(out, "json")] == pytest.approx((plain + mirrored) / 2, abs=1e-4)
