"""The reference experiment is stated once (stages/lib/reference.py); the README, docs/ and params.yaml agree."""

from __future__ import annotations

import re

import yaml

from stages.lib import reference, sources
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = "\n".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))


def test_params_yaml_as_committed_is_the_reference_experiment():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert raw["data"]["source"] == reference.DATASET
    assert raw["model"]["weights"] == reference.WEIGHTS and raw["model"]["base"] == reference.BASE
    assert raw["model"]["fine_tune_at"] == 100 and raw["model"]["image_size"] == 160


def test_readme_quotes_the_reference_figures_and_counts_as_stated_here():
    for figure in reference.FIGURES.values():
        number = re.match(r"[\d.]+", figure).group(0)
        assert re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", README), figure  # 0.71, not 0.716
    for count in (reference.PARAMS_TOTAL, reference.PARAMS_TRAINABLE_TRANSFER, reference.PARAMS_TRAINABLE_FINETUNE_100):
        assert f"{count:,}" in DOCS
    assert sources.ARCHIVES[reference.DATASET] in README
