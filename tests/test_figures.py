"""The report's figures: the continued transfer + fine-tuning run, the grid's choice of images, confusion counts,
and that each figure is drawn as a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages.lib import figures
from stages.lib.errors import PipelineError
from tests.conftest import jpeg_bytes
from tests.test_markdown import PREDICTIONS


def test_continued_run_numbers_epochs_from_one_and_marks_fine_tuning():
    transfer = pd.DataFrame({"step": range(10), "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5})
    finetune = transfer.assign(step=range(10, 20))
    run = figures.continue_run(transfer, finetune, Path("dvclive/finetune"))
    assert run.curves["epoch"].tolist() == list(range(1, 21))
    assert run.finetune_starts_at == 10.5 and run.transfer_epochs == 10
    assert list(run.curves.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]


def test_continued_run_refuses_logs_that_overlap():
    transfer = pd.DataFrame({"step": range(3), "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5})
    with pytest.raises(PipelineError, match="re-run the finetune stage"):
        figures.continue_run(transfer, transfer, Path("dvclive/finetune"))


def predictions(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    """(path, label, probability of class 1) -> the predictions table of scoring.predictions_frame."""
    frame = pd.DataFrame(rows, columns=["path", "label", "probability"])
    frame["predicted"] = (frame["probability"] >= 0.5).astype(int)
    frame["confidence"] = np.where(frame["predicted"] == 1, frame["probability"], 1 - frame["probability"])
    return frame


def test_grid_shows_mistakes_first_most_confident_first_then_spread_correct_ones():
    chosen = figures.select_grid(predictions(PREDICTIONS[::-1]), 4)  # input order does not matter
    assert chosen["path"].tolist() == [
        "validation/cats/cat.3.jpg",  # wrong with 0.90 for dogs
        "validation/dogs/dog.6.jpg",  # wrong with 0.60 for cats
        "validation/cats/cat.1.jpg",  # first and last of the six correct ones, by path
        "validation/dogs/dog.8.jpg",
    ]
    assert chosen["mistake"].tolist() == [True, True, False, False]
    assert chosen["confidence"].round(2).tolist() == [0.9, 0.6, 0.9, 0.95]


def test_grid_caps_mistakes_at_half_unless_too_few_correct():
    all_wrong_but_one = predictions([(f"x{i}.jpg", 0, 0.9) for i in range(9)] + [("y.jpg", 0, 0.1)])
    chosen = figures.select_grid(all_wrong_but_one, 4)
    assert chosen["mistake"].tolist() == [True, True, True, False]  # only one correct image to show
    assert figures.select_grid(predictions(PREDICTIONS), 100)["path"].nunique() == len(PREDICTIONS)
    mostly_right = predictions([(f"x{i}.jpg", 1, 0.9) for i in range(10)] + [("y.jpg", 0, 0.7), ("z.jpg", 0, 0.8)])
    assert figures.select_grid(mostly_right, 6)["mistake"].tolist() == [True, True, False, False, False, False]


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    frame = pd.DataFrame({"label": [0, 0, 1, 2, 2, 2], "predicted": [0, 1, 1, 2, 0, 2]})
    assert figures.confusion_matrix(frame, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


@pytest.mark.parametrize("classes", [2, 10, 100])
def test_confusion_figure_is_drawn_for_any_number_of_classes(tmp_path: Path, classes: int):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"label": rng.integers(0, classes, 500), "predicted": rng.integers(0, classes, 500)})
    names = [f"class {i}" for i in range(classes)]
    matrices = {m: figures.confusion_matrix(frame, classes) for m in ("a", "b")}
    figures.plot_confusion(matrices, {"a": "a", "b": "b"}, names, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as image:
        assert image.format == "PNG" and image.width >= 800


def test_grid_is_drawn_from_the_raw_images(tmp_path: Path):
    for index, (path, _, _) in enumerate(PREDICTIONS):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(jpeg_bytes(index, size=(48, 36)))
    chosen = figures.select_grid(predictions(PREDICTIONS), 4)
    figures.plot_grid(chosen, tmp_path, ["cats", "dogs"], tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as image:
        assert image.format == "PNG" and image.width >= 300
    (tmp_path / chosen["path"][0]).write_bytes(b"not an image")
    with pytest.raises(PipelineError, match="cannot be read as an image.*re-run the download stage"):
        figures.plot_grid(chosen, tmp_path, ["cats", "dogs"], tmp_path / "grid.png")


def texts_outside(figure) -> list[str]:
    """The texts of a drawn figure that reach beyond its edges (clipped in the PNG)."""
    canvas = figure.canvas
    canvas.draw()
    bounds = figure.bbox
    outside = []
    for text in figure.findobj(matplotlib.text.Text):
        if not text.get_visible() or not text.get_text():
            continue
        extent = text.get_window_extent(canvas.get_renderer())
        inside = extent.x0 >= bounds.x0 - 1 and extent.y0 >= bounds.y0 - 1
        if not (inside and extent.x1 <= bounds.x1 + 1 and extent.y1 <= bounds.y1 + 1):
            outside.append(text.get_text())
    return outside


@pytest.mark.parametrize(
    "names",
    [[f"class {i}" for i in range(10)], ["a" * 200, "b", "c"], ["$x$", "a$b", "ｃａｔ", "cat", "x|y`z", "None"],
     [f"{'long name ' * 4}{i}" for i in range(12)]],
    ids=["ten", "two-hundred-characters", "mathtext-and-odd", "long-and-alike"],
)  # fmt: skip
def test_confusion_figure_fits_every_label_and_title(names, recwarn):
    """Seen on the landed main: at 10 classes the titles and `predicted` were clipped in a 1200x400 figure; a
    200-character name ran across all three panels (`constrained_layout not applied`)."""
    frame = pd.DataFrame({"label": np.arange(60) % len(names), "predicted": (np.arange(60) * 7) % len(names)})
    matrices = {m: figures.confusion_matrix(frame, len(names)) for m in ("baseline", "transfer", "finetune")}
    titles = {m: f"{m} (accuracy 0.1234)" for m in matrices}
    figure = figures.confusion_figure(matrices, titles, names)
    assert texts_outside(figure) == []
    assert not [w for w in recwarn if "constrained_layout" in str(w.message)]
    texts = figure.findobj(matplotlib.text.Text)
    assert set(figures.short_labels(names)) <= {text.get_text() for text in texts}  # every class named
    assert not [text for text in texts if "$" in text.get_text() and text.get_parse_math()]  # none typeset as math


def test_short_labels_cut_long_names_and_tell_alike_ones_apart():
    assert figures.short_labels(["cats", "b" * 30, "猫"]) == ["cats", "b" * 23 + "…", "#2"]  # no CJK font here
    twins = figures.short_labels(["x" * 30 + "1", "x" * 30 + "2", "y"])
    assert twins == ["0: " + "x" * 23 + "…", "1: " + "x" * 23 + "…", "y"]


def test_a_thousand_classes_draw_heat_maps_of_fixed_size_and_the_most_confused_in_detail(tmp_path: Path):
    """Seen on the landed main: 400 classes drew a 42000x14000 px figure in 192 s at 9.7 GB; ~700 were OOM-killed."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(1000), 2)
    predicted = np.where(rng.random(2000) < 0.7, labels, rng.integers(0, 1000, 2000))
    frame = pd.DataFrame({"label": labels, "predicted": predicted})
    matrix = figures.confusion_matrix(frame, 1000)
    names = [f"species {i:04d}" for i in range(1000)]
    figures.plot_confusion({m: matrix for m in ("a", "b", "c")}, {m: m for m in "abc"}, names, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as image:
        assert image.size == (2100, 750)
    chosen = figures.plot_most_confused(matrix, names, "c", tmp_path / "top.png")
    errors = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * np.diag(matrix)
    assert len(chosen) == figures.MOST_CONFUSED and min(errors[chosen]) >= np.sort(errors)[-figures.MOST_CONFUSED]
    with Image.open(tmp_path / "top.png") as image:
        assert image.width < 1200 and image.height < 1200


def drawn_texts(figure) -> str:
    return " ".join(text.get_text() for text in figure.findobj(matplotlib.text.Text))


def test_audit_grids_name_hostile_classes_and_files_as_text(tmp_path: Path, recwarn):
    names = ["$x$", "None", "猫", "long name " * 5]
    paths = ["train/$x$/a$b.jpg", "test/None/猫.jpg", "val/猫/c.jpg"]
    for index, path in enumerate(paths):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(jpeg_bytes(index, size=(48, 36)))
    issues = pd.DataFrame(
        {"path": paths, "split": ["train", "test", "val"], "given": names[:3],
         "suggested": [names[3], names[0], names[1]], "score": [0.01, 0.02, 0.3]}
    )  # fmt: skip
    pairs = pd.DataFrame(
        {"path_a": paths[:2], "split_a": ["train", "test"], "path_b": paths[1:], "split_b": ["test", "val"],
         "similarity": [0.99, 0.95], "same_bytes": [False, False]}
    )  # fmt: skip
    suspects, near = (
        figures.label_issues_figure(issues, tmp_path, names),
        figures.near_duplicates_figure(pairs, tmp_path),
    )
    for figure in (suspects, near):
        assert texts_outside(figure) == []
        assert not [t for t in figure.findobj(matplotlib.text.Text) if "$" in t.get_text() and t.get_parse_math()]
    labels = figures.short_labels(names)  # `#2` for 猫: no CJK font here
    assert all(f"given {labels[i]}" in drawn_texts(suspects) for i in range(3))
    assert f"suggested {labels[3]}" in drawn_texts(suspects)
    assert "train: a$b.jpg" in drawn_texts(near) and "similarity 0.990" in drawn_texts(near)
    assert "(file name)" in drawn_texts(near)  # 猫.jpg
    assert not [w for w in recwarn if "Glyph" in str(w.message)]
    figures.plot_near_duplicates(pairs.head(1), tmp_path, tmp_path / "pairs.png")
    with Image.open(tmp_path / "pairs.png") as image:
        assert image.format == "PNG" and image.width >= 300 and image.height >= 300
