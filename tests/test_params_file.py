from __future__ import annotations

from pathlib import Path

import pytest

from stages.lib import params_file
from stages.lib.params_file import ParamsError
from tests.conftest import ROOT


def test_a_file_that_is_not_there_is_named():
    with pytest.raises(ParamsError, match="nothere.yaml: not found"):
        params_file.read(ROOT / "nothere.yaml")


def load_error(path: Path) -> str:
    with pytest.raises(ParamsError) as caught:
        params_file.read(path)
    return str(caught.value)


def test_a_yaml_error_is_one_line_with_its_line_and_column(tmp_path: Path):
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("seed: 42", "seed: 42\n  oops: [", 1))
    message = load_error(bad)
    assert "\n" not in message and message.startswith(f"{bad}:")
    line, column = message.split(":")[1:3]
    assert (int(line), int(column)) == (5, 7)  # the indented key under a scalar


def test_a_params_file_that_is_not_utf8_or_a_directory_is_one_line(tmp_path: Path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes((ROOT / "params.yaml").read_bytes().replace(b"seed: 42", b"# caf\xe9\nseed: 42", 1))
    assert (
        load_error(latin1)
        == f"{latin1}: not UTF-8 text (byte 0xe9 at offset {latin1.read_bytes().index(0xE9)}); save it as UTF-8"
    )
    folder = tmp_path / "params.yaml"
    folder.mkdir()
    assert load_error(folder) == f"{folder}: is a directory; the params file must be a YAML file"


def test_a_key_given_twice_is_refused_naming_it_and_its_line(tmp_path: Path):
    twice = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    twice.write_text(text + "seed: 7\n")
    line = len(text.splitlines()) + 1
    assert load_error(twice) == f"{twice}:{line}:1: not valid YAML: duplicate key 'seed'; keep one of them"
