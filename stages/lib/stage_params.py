"""A stage's params: a view of the validated params.yaml limited to the keys the stage declares.

A stage reads its params through `for_stage(PARAMS)`, a view that allows only the keys the stage declares (the same
list as its `params:` in dvc.yaml) and records which it read, so a test can check that DVC re-runs exactly the stages
a change affects; `values_read` puts the values read into the stage's metrics. Run as a command (cli.run), the stage
also replaces no output once the file holds other values for those keys than it read (`unchanged_since_read`): DVC
records the values the file holds when the stage ends, and would file outputs of the old ones under the new.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

from stages.lib import lifecycle, params, params_file
from stages.lib.params import Params
from stages.lib.params_file import PARAMS_FILE

READ_PREFIX = "params_read."


class UndeclaredParamError(AttributeError):
    """A stage read a key that its PARAMS (and so its dvc.yaml `params:`) does not list."""


class StageParams:
    """Read-only view of `Params` that allows only declared keys and records the ones read.

    Declared names are dotted leaf keys (`split.test_fraction`) or whole sections (`encode`), as in dvc.yaml.
    """

    def __init__(
        self, node: Any, declared: frozenset[str], read: set[str], prefix: str = "", values: dict | None = None
    ) -> None:
        self._node, self._declared, self.read, self._prefix = node, declared, read, prefix
        self._values: dict[str, Any] = {} if values is None else values

    def _allows(self, key: str) -> bool:
        return any(key == d or key.startswith(d + ".") for d in self._declared)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        key = self._prefix + name
        value = getattr(self._node, name)
        if dataclasses.is_dataclass(value):
            if not any(self._allows(key) or d.startswith(key + ".") for d in self._declared):
                raise UndeclaredParamError(f"stage reads section {key!r} but declares none of its keys")
            return StageParams(value, self._declared, self.read, key + ".", self._values)
        if not self._allows(key):
            raise UndeclaredParamError(
                f"stage reads {key!r} but does not declare it: "
                "add it to the stage's PARAMS and to its params: in dvc.yaml"
            )
        self.read.add(key)
        self._values[key] = value
        return value

    def as_metrics(self) -> dict[str, Any]:
        """`params_read.<key>`: the value of every key the stage read, for its metrics file. A run whose params.yaml
        changed under it (a second `dvc exp run -S` while a `dvc repro` runs) shows there what it really used."""
        return {f"{READ_PREFIX}{key}": value for key, value in sorted(self._values.items())}

    def snapshot(self) -> dict[str, Any]:
        """Every declared leaf and its value (for checkpoint fingerprints), without counting as a read."""
        leaves = params.flatten(dataclasses.asdict(self._node), self._prefix)
        return {key: value for key, value in sorted(leaves.items()) if self._allows(key)}


def for_stage(declared: Iterable[str], path: Path | str = PARAMS_FILE) -> Params:
    """Load and validate the whole file, then give the stage a view limited to `declared`; under cli.run, its
    outputs are replaced only while the file still holds the values it read.

    Typed as the Params it views, so that editors and type checkers follow `p.model.base` to its declaration in
    params.py; what is returned is a StageParams."""
    read_at = params_file.version(path)  # before reading: a change after this is seen by the check
    loaded = params.load(path)
    keys = frozenset(declared)
    unknown = [k for k in keys if not any(k == a or a.startswith(k + ".") for a in params.all_keys(loaded))]
    if unknown:
        raise params.ParamsError(f"{path}: stage declares keys that do not exist: {', '.join(sorted(unknown))}")
    view = StageParams(loaded, keys, set())
    lifecycle.check_before_replacing(unchanged_since_read(view, path, read_at))
    return cast(Params, view)


def values_read(view: Params) -> dict[str, Any]:
    """`params_read.<key>` and its value for every key the stage has read (StageParams.as_metrics)."""
    return _as_view(view).as_metrics()


def snapshot(view: Params) -> dict[str, Any]:
    """Every key the stage declares and its value (StageParams.snapshot)."""
    return _as_view(view).snapshot()


def _as_view(view: Params) -> StageParams:
    if not isinstance(view, StageParams):
        raise TypeError(f"expected the view for_stage returns, got {type(view).__name__}")
    return view


REWRITE_SECONDS = 0.5  # a params file caught half-written by whatever rewrites it is whole again after this


def unchanged_since_read(view: Params, path: Path | str, read_at: tuple[int, ...] | None) -> Callable[[], None]:
    """A check that raises a ParamsError naming each key `view` declares whose value in `path` is no longer the one
    the stage read (a `dvc exp run -S` started while this stage runs writes its values there): its outputs are of
    the old values, and DVC would record the new."""
    declared, read, seen = _as_view(view)._declared, snapshot(view), [read_at]  # what the stage read: fixed

    def check() -> None:
        version = params_file.version(path)
        if version is not None and version == seen[0]:
            return
        try:
            now = StageParams(params.load(path), declared, set()).snapshot()
        except params.ParamsError:
            time.sleep(REWRITE_SECONDS)  # caught while being rewritten (`dvc exp run -S` writes it in place)?
            try:
                now = StageParams(params.load(path), declared, set()).snapshot()
            except params.ParamsError as exc:
                raise params.ParamsError(
                    f"{path} changed while the stage ran and no longer loads ({exc}); nothing was replaced: fix it and "
                    "run the stage again"
                ) from None
        changed = [
            f"{key} was {json.dumps(old, default=str)}, is now {json.dumps(now.get(key), default=str)}"
            for key, old in read.items()
            if now.get(key) != old
        ]
        if changed:
            raise params.ParamsError(
                f"{path} changed while the stage ran: {'; '.join(changed)}; nothing was replaced, as DVC would "
                "record outputs of the old values under the new: run the stage again"
            )
        seen[0] = version

    return check
