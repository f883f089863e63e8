"""The README says what dvc.yaml says: the stage table (each stage's params and what it writes), and the stage
command the two-host recipe gives worker 1."""

from __future__ import annotations

import re

import pytest
import yaml

from stages.lib import params
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
LEAVES = params.all_keys(params.load(ROOT / "params.yaml"))


def stage_table() -> dict[str, tuple[str, str]]:
    """stage -> (reads cell, writes cell) of the table under "## Stages"."""
    section = README[README.index("## Stages") :]
    rows = re.findall(r"^\| (\w+) \| (.*?) \| (.*?) \|$", section.split("\n\n", 2)[1], re.M)
    return {stage: (reads, writes) for stage, reads, writes in rows if stage != "stage"}


def leaves(names: list[str]) -> set[str]:
    """Param names as dvc.yaml or the README write them (`model.{a,b}`, `train.*`, `seed`) -> leaf keys."""
    out: set[str] = set()
    for name in names:
        name = name.removesuffix(".*")
        braces = re.fullmatch(r"(.*)\.\{(.*)\}", name)
        expanded = [f"{braces.group(1)}.{part}" for part in braces.group(2).split(",")] if braces else [name]
        for key in expanded:
            out |= {leaf for leaf in LEAVES if leaf == key or leaf.startswith(key + ".")}
    return out


def test_the_table_lists_every_stage_in_pipeline_order():
    assert list(stage_table()) == list(DVC)


@pytest.mark.parametrize("stage", list(DVC))
def test_reads_column_is_the_stage_params(stage: str):
    reads = stage_table()[stage][0]
    written = [] if reads == "-" else re.findall(r"`([^`]+)`", reads)
    assert leaves(written) == leaves(DVC[stage].get("params", []))


@pytest.mark.parametrize("stage", list(DVC))
def test_writes_column_names_every_output(stage: str):
    writes = stage_table()[stage][1]
    for out in DVC[stage].get("outs", []) + DVC[stage].get("metrics", []):
        path = out if isinstance(out, str) else next(iter(out))
        assert f"`{path}" in writes, path


def test_the_two_host_recipe_gives_worker_1_the_transfer_stage_command_of_dvc_yaml():
    section = README[README.index("## Scaling out") :]
    command = re.search(r"^  (python -m stages\.transfer .*?)\n  ```", section, re.M | re.S).group(1)
    assert " ".join(command.replace("\\\n", " ").split()) == " ".join(DVC["transfer"]["cmd"].split())
