"""The baseline CNNs' table: plain data that params.py checks baseline.arch and baseline.image_size against (the
error lines: tests/test_params.py); tests/test_cnns.py builds every entry and counts its parameters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stages.lib.architectures import ARCHITECTURES
from tests.conftest import ROOT


def test_the_table_lists_the_five_architectures_with_their_minimum_among_their_counted_sizes():
    assert list(ARCHITECTURES) == ["simple_cnn", "alexnet", "vgg16", "googlenet", "resnet18"]
    assert all(entry.min_size in entry.parameters for entry in ARCHITECTURES.values())


def test_the_table_needs_no_keras():
    code = "import sys; import stages.lib.params; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def test_the_committed_baseline_is_in_the_table():
    from stages.lib import params

    baseline = params.load(ROOT / "params.yaml").baseline
    assert baseline.image_size >= ARCHITECTURES[baseline.arch].min_size


def test_the_baseline_stage_refuses_an_unknown_arch_before_anything_else(project, capsys):
    from stages import baseline
    from stages.lib import cli
    from tests.conftest import set_params, stage_args

    set_params(project, baseline={"arch": "lenet"})
    with pytest.raises(SystemExit) as exit_:  # no records in the project: the check comes first
        cli.run(lambda: baseline.main(stage_args(project, "baseline")))
    assert str(exit_.value.code).startswith(f"error: {project / 'params.yaml'}: baseline.arch: must be one of")


def test_an_architecture_added_to_the_table_is_accepted_at_once(monkeypatch: pytest.MonkeyPatch):
    """docs/extending.md: one ARCHITECTURES entry and baseline.arch takes it (found in review: a Literal frozen at
    import refused it)."""
    import yaml

    from stages.lib import params
    from tests.conftest import ROOT

    monkeypatch.setitem(ARCHITECTURES, "tiny_cnn", ARCHITECTURES["simple_cnn"])
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["baseline"] |= {"arch": "tiny_cnn"}
    assert params.parse(raw).baseline.arch == "tiny_cnn"
