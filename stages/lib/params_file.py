"""params.yaml read as YAML, unvalidated: a file that is missing, unreadable, not UTF-8, not YAML or that gives a key
twice is one ParamsError line naming the file (and the line, where YAML says it). params.py validates what it reads;
`version` tells a rewritten file from the one read without reading it (stage_params.unchanged_since_read).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from stages.lib.errors import PipelineError, first_line

PARAMS_FILE = Path("params.yaml")  # where a stage reads its params unless --params names another file


class ParamsError(PipelineError, ValueError):
    """params.yaml is missing, unreadable, or has a bad key or value."""


def read(path: Path | str = PARAMS_FILE) -> Any:
    """The file's YAML, unvalidated; a file that cannot be read, is not UTF-8 or not YAML is one ParamsError line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")  # what DVC reads it as, whatever the locale
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found (run from the project root)") from None
    except IsADirectoryError:
        raise ParamsError(f"{path}: is a directory; the params file must be a YAML file") from None
    except UnicodeDecodeError as exc:
        at = f"byte {exc.object[exc.start]:#04x} at offset {exc.start}"
        raise ParamsError(f"{path}: not UTF-8 text ({at}); save it as UTF-8") from None
    except OSError as exc:
        raise ParamsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader, see below
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ParamsError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {first_line(exc)}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, refusing a key given twice in one mapping (PyYAML keeps the last silently; DVC refuses it)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen and key != "<<":
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}; keep one of them", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def version(path: Path | str) -> tuple[int, ...] | None:
    """What tells a changed file from the one read, without reading it (a stat per output replaced)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_ino, found.st_size, found.st_mtime_ns
