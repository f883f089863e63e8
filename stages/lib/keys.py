"""Metric keys that carry a class name, built in one place so that no class name can collide with another key.

A class's keys live under a `class` component: `<prefix>.class.<name>` (metrics/split.json: `train.class.dogs`,
the train images of class `dogs`) and `<prefix>.class.<name>.<metric>` (metrics/eval.json:
`finetune.class.dogs.f1`). No aggregate key has a `class` component there, and a metric name is one fixed word
at the end, so whatever a class is called (`macro`, `total`, `precision`, `a.b`) its keys are its own: the
class name is everything between `class.` and the end (split.json) or the last `.` (eval.json), dots included.
"""

from __future__ import annotations

CLASS = "class"


def class_key(name: str, metric: str | None = None, prefix: str = "") -> str:
    """`[<prefix>.]class.<name>[.<metric>]`."""
    return ".".join([*([prefix] if prefix else []), CLASS, name, *([metric] if metric else [])])
