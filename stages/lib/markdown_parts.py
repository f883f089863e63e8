"""Markdown pieces the report (markdown.py) and the model card (model_card.py) both write: text of any kind as a code
span, numbers, and tables. Class names and paths come from the wild, so every one goes through `code`."""

from __future__ import annotations

import re
from typing import Any


def code(text: Any, table: bool = True) -> str:
    """`text` as a markdown code span, whatever it holds: class names and paths come from the wild. The fence is
    longer than any run of backticks inside, and in a table cell `|` is escaped (GitHub ends the cell there
    otherwise, code span or not)."""
    text = str(text).replace("|", "\\|") if table else str(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def fmt(value: Any, digits: int = 4) -> str:
    """Scores as fixed decimals; null (undefined, e.g. ROC AUC with one class) as n/a."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def count(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def with_interval(scores: Any, key: str) -> str:
    """A score of `scores` (a dict, or files.Metrics) and, in parentheses, its 95% interval (`<key>.low`, `<key>.high`),
    as evaluate and the training stages write them; n/a when the score is undefined."""
    value = scores[key]
    if value is None:
        return "n/a"
    return f"{fmt(value)} ({fmt(scores[f'{key}.low'], 3)}-{fmt(scores[f'{key}.high'], 3)})"


def table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A markdown table; `align` holds one character per column, l or r (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(cells) + " |" for cells in [header, rule, *rows]]
