"""The predict command's work without a model: which files a folder gives, where class names come from, rows in each
format, and names with control characters kept on one line. (tests/test_predict.py runs the command.)"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from stages.lib import prediction
from stages.lib.file_names import ignore_reason, left_out
from tests.test_predict import HIDDEN


def test_a_folder_skips_exactly_the_files_extraction_skips_by_their_name(tmp_path: Path):
    names = [*HIDDEN, "a.jpg", "sub/b.webp", "THUMBS.DB", "x/.hidden/y.jpg", "Thumbs.db.jpg", "notes.txt", "two\nl.jpg"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    kept = {path.relative_to(tmp_path).as_posix() for path in prediction.expand([tmp_path], report=None)}
    assert kept == {name for name in names if left_out(name) is None}  # file_names decides, for extraction too
    assert kept == {"a.jpg", "sub/b.webp", "Thumbs.db.jpg", "notes.txt", "two\nl.jpg"}
    assert ignore_reason("two\nl.jpg") == "control_character"  # extraction skips it; predict prints it escaped


def test_class_names_come_from_the_option_labels_beside_the_model_or_the_records(tmp_path: Path):
    export = tmp_path / "export"
    (export / "saved_model" / "1").mkdir(parents=True)
    (export / "labels.txt").write_text("None\ncafé\n")
    for model in (export / "model.keras", export / "saved_model" / "1"):
        source = prediction.class_names_file(None, model, tmp_path / "records")
        assert source == export / "labels.txt" and prediction.class_names(None, source) == ["None", "café"]
    assert prediction.class_names_file("a,b", export / "model.keras", tmp_path) is None
    assert prediction.class_names(" a , b ", None) == ["a", "b"]
    assert (
        prediction.class_names_file(None, tmp_path / "m.keras", tmp_path / "records")
        == tmp_path / "records" / "meta.json"
    )
    with pytest.raises(prediction.UsageError, match="need at least two distinct class names"):
        prediction.class_names("a,a", None)


def test_rows_name_the_label_its_probability_and_the_next_classes(tmp_path: Path):
    classes = ["cats", "dogs", "cows"]
    rows = prediction.make_rows([("x.jpg", np.array([0.2, 0.5, 0.3]))], classes, 0.5, top_k=2)
    assert rows == [{"path": "x.jpg", "label": "dogs", "probability": 0.5, "label_2": "cows", "probability_2": 0.3}]
    assert prediction.columns(classes, 2) == list(rows[0])
    two = prediction.make_rows([("y.jpg", np.array([0.6, 0.4]))], ["cats", "dogs"], 0.3, top_k=1)
    assert two == [{"path": "y.jpg", "label": "dogs", "probability": 0.4, "p_dogs": 0.4}]  # the threshold decides


@pytest.mark.parametrize("fmt", prediction.FORMATS)
def test_a_name_with_a_newline_stays_on_one_row_in_every_format(fmt: str):
    rows = [{"path": "two\nlines.jpg", "label": "a", "probability": 0.75}]
    out = prediction.render(rows, ["path", "label", "probability"], fmt, "models/m\n.keras")
    if fmt == "table":
        model, header, row = out.splitlines()  # the model, the header and one row
        assert model == "model: models/m\\n.keras" and row.split() == ["two\\nlines.jpg", "a", "0.7500"]
    elif fmt == "csv":
        assert list(csv.reader(io.StringIO(out)))[1] == ["two\nlines.jpg", "a", "0.750000", "models/m\n.keras"]
    else:
        assert json.loads(out) == [
            {"path": "two\nlines.jpg", "label": "a", "probability": 0.75, "model": "models/m\n.keras"}
        ]
    assert prediction.render([], ["path"], fmt, "m") == {"table": "", "csv": "path,model\n", "json": "[]\n"}[fmt]


def test_escaped_keeps_text_without_control_characters_as_it_is():
    assert prediction.escaped("café 猫.jpg") == "café 猫.jpg"
    assert prediction.escaped("a\tb\rc") == "a\\tb\\rc" and prediction.escaped("猫\n") == "猫\\n"


def test_a_framework_without_a_private_name_relied_on_is_one_error_line(tmp_path: Path):
    """Found in review: serving.py's import checks internals.py's private names, and predict imported it outside its
    error handling, so a Keras without one of them ended predict in a traceback. In a process of its own, with one
    such name taken away before predict imports serving."""
    import subprocess
    import sys

    (tmp_path / "model.keras").write_bytes(b"not read")
    (tmp_path / "a.jpg").write_bytes(b"not read either")
    code = """if True:
        import sys
        from stages import predict  # first, as the command does: it quiets TensorFlow's start-up log
        from keras.src.layers import layer
        del layer.Layer._flatten_layers
        sys.exit(predict.main(sys.argv[1:]))
    """
    args = [str(tmp_path / "a.jpg"), "--model", str(tmp_path / "model.keras"), "--classes", "a,b"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=Path.cwd())
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: keras.src.layers.layer.Layer._flatten_layers is gone in Keras ")
    assert done.stderr.count("\n") == 1 and "install the versions of requirements.lock (make venv)" in done.stderr
