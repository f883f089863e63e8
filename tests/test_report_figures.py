"""The report's figures: `draw` writes each into the file FILES names, links exactly what it drew, and draws the audit's
grids and the most-confused detail only when the report shows them."""

from __future__ import annotations

from pathlib import Path

import pytest

from stages.lib import report_figures, report_inputs
from stages.lib.report_figures import FILES, FOLDER
from tests.conftest import set_params
from tests.test_markdown import argv, build_inputs


def drawn_from(root: Path, folder: Path, audit_show: int = 20) -> report_figures.Drawn:
    args = argv(root)
    names = ("metrics", "dvclive", "evaluation", "records", "raw", "params", "audit")
    inputs = report_inputs.read_inputs(report_inputs.InputPaths(*(Path(args[args.index(f"--{n}") + 1]) for n in names)))
    folder.mkdir()
    return report_figures.draw(inputs, folder, grid_images=6, audit_show=audit_show)


def test_every_figure_drawn_is_in_its_file_and_linked_by_it(tmp_path: Path):
    drawn = drawn_from(build_inputs(tmp_path / "project"), tmp_path / FOLDER)
    on_disk = {path.name for path in (tmp_path / FOLDER).iterdir()}
    assert on_disk == {FILES[key] for key in drawn.links}
    assert drawn.links == {key: f"{FOLDER}/{FILES[key]}" for key in FILES if key != "most_confused"}  # two classes
    assert len(drawn.grid) == 6 and drawn.continued.transfer_epochs == 3


@pytest.mark.parametrize("audit_show", [0, 1])
def test_the_audit_s_grids_are_drawn_only_when_shown(tmp_path: Path, audit_show: int):
    root = build_inputs(tmp_path / "project")
    set_params(root, audit={"show": audit_show})
    drawn = drawn_from(root, tmp_path / FOLDER, audit_show)
    assert ({"label_issues", "near_duplicates"} <= set(drawn.links)) == bool(audit_show)


def test_above_the_named_classes_the_final_model_s_worst_classes_are_drawn_apart(tmp_path: Path):
    root = build_inputs(tmp_path / "project", classes=[f"c{i:02d}" for i in range(40)], test_per_class=1)
    drawn = drawn_from(root, tmp_path / FOLDER)
    assert drawn.links["most_confused"] == f"{FOLDER}/{FILES['most_confused']}"
    assert (tmp_path / FOLDER / FILES["most_confused"]).is_file()
