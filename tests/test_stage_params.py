from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stages import split
from stages.lib import cli, params, stage_params
from tests.conftest import ROOT, build_encoded_project, stage_args


def test_stage_view_allows_only_declared_keys_and_records_reads():
    view = stage_params.for_stage(["seed", "encode"], ROOT / "params.yaml")
    assert view.seed == 42
    assert view.encode.image_size == 160  # a declared section allows its leaves
    assert view.read == {"seed", "encode.image_size"}
    assert stage_params.values_read(view) == {"params_read.encode.image_size": 160, "params_read.seed": 42}
    with pytest.raises(stage_params.UndeclaredParamError, match="split"):
        _ = view.split.test_fraction
    leaf_view = stage_params.for_stage(["data.source"], ROOT / "params.yaml")
    assert leaf_view.data.source == "cats_and_dogs_filtered"
    with pytest.raises(stage_params.UndeclaredParamError, match="'data.sha256' but does not declare it"):
        _ = leaf_view.data.sha256


def test_a_snapshot_holds_every_declared_key_without_counting_as_read():
    view = stage_params.for_stage(["seed", "split"], ROOT / "params.yaml")
    assert stage_params.snapshot(view) == {
        "seed": 42,
        "split.holdout_fraction": 0.33,
        "split.test_fraction": 0.2,
        "split.warn_aspect_ratio": 10,
        "split.warn_min_side": 8,
    }
    assert view.read == set() and stage_params.values_read(view) == {}
    with pytest.raises(TypeError, match="expected the view for_stage returns, got Params"):
        stage_params.snapshot(params.load(ROOT / "params.yaml"))


def test_stage_declaring_a_key_that_does_not_exist_fails():
    with pytest.raises(params.ParamsError, match="split.nope"):
        stage_params.for_stage(["seed", "split.nope"], ROOT / "params.yaml")


def edit_params(path: Path, section: str, **values) -> None:
    raw = yaml.safe_load(path.read_text())
    raw[section].update(values)
    path.write_text(yaml.safe_dump(raw))


def run_stage(main) -> str:
    """A stage's main as its command runs it (cli.run): its one error line, or "" when it succeeded."""
    try:
        cli.run(main)
    except SystemExit as exit_:
        return str(exit_.code)
    return ""


def test_a_stage_whose_declared_params_change_while_it_runs_replaces_no_output(tmp_path: Path, monkeypatch):
    # As when a second `dvc exp run -S split.test_fraction=0.3` writes params.yaml while the split stage runs:
    # DVC would record 0.3 for outputs made with 0.2.
    root = build_encoded_project(tmp_path / "p")
    before = {path: path.read_bytes() for path in (root / "data" / "splits").iterdir()}
    before[root / "metrics" / "data.json"] = (root / "metrics" / "data.json").read_bytes()
    make_splits = split.make_splits

    def edited_meanwhile(*args, **kwargs):
        edit_params(root / "params.yaml", "split", test_fraction=0.3)
        return make_splits(*args, **kwargs)

    monkeypatch.setattr(split, "make_splits", edited_meanwhile)
    argv = ["--params", str(root / "params.yaml"), "--raw", str(root / "data" / "raw")]
    argv += ["--corrections", str(ROOT / "corrections.csv")]
    argv += ["--out", str(root / "data" / "splits"), "--metrics", str(root / "metrics" / "data.json")]
    argv += ["--details", str(root / "metrics" / "split.json")]
    assert run_stage(lambda: split.main(argv)) == (
        f"error: {root / 'params.yaml'} changed while the stage ran: split.test_fraction was 0.2, is now 0.3; "
        "nothing was replaced, as DVC would record outputs of the old values under the new: run the stage again"
    )
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in (root / "data" / "splits").parent.iterdir()) == ["raw", "splits", "tfrecords"]

    monkeypatch.setattr(split, "make_splits", make_splits)
    assert run_stage(lambda: split.main(argv)) == ""  # run again: it uses the new value
    assert json.loads((root / "metrics" / "split.json").read_text())["params_read.split.test_fraction"] == 0.3

    def undeclared_edited(*args, **kwargs):  # a key the stage does not declare: its outputs are still right
        edit_params(root / "params.yaml", "report", grid_images=4)
        return make_splits(*args, **kwargs)

    monkeypatch.setattr(split, "make_splits", undeclared_edited)
    assert run_stage(lambda: split.main(argv)) == ""


@pytest.mark.slow
def test_a_training_stage_whose_params_change_stops_before_its_next_checkpoint(tmp_path: Path, monkeypatch):
    from stages import baseline
    from stages.lib import records

    root = build_encoded_project(tmp_path / "p")
    read_meta = records.read_meta

    def edited_meanwhile(path):
        edit_params(root / "params.yaml", "baseline", learning_rate=0.01)
        return read_meta(path)

    monkeypatch.setattr(records, "read_meta", edited_meanwhile)
    assert run_stage(lambda: baseline.main(stage_args(root, "baseline"))) == (
        f"error: {root / 'params.yaml'} changed while the stage ran: baseline.learning_rate was 0.001, is now 0.01; "
        "nothing was replaced, as DVC would record outputs of the old values under the new: run the stage again"
    )
    assert not (root / "models" / "baseline.keras").exists() and not (root / "metrics" / "baseline.json").exists()
    assert not list((root / "models" / "checkpoints" / "baseline").glob("*"))  # not even epoch 1's checkpoint


def test_a_params_file_broken_while_a_stage_runs_is_one_line(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    view = stage_params.for_stage(["seed"], path)
    check = stage_params.unchanged_since_read(view, path, None)
    path.write_text("seed: [\n")
    with pytest.raises(params.ParamsError) as err:
        check()
    assert str(err.value).startswith(f"{path} changed while the stage ran and no longer loads ({path}:2:1: not valid")
    assert str(err.value).endswith("); nothing was replaced: fix it and run the stage again")
