"""Markdown pieces: a code span holds any text, numbers print fixed, tables align."""

from __future__ import annotations

import pytest

from stages.lib import markdown_parts


@pytest.mark.parametrize(
    ("text", "cell", "inline"),
    [
        ("cats", "`cats`", "`cats`"),
        ("x|y`z`", "`` x\\|y`z` ``", "`` x|y`z` ``"),  # a | would end a table cell; a ` the span
        ("``a", "``` ``a ```", "``` ``a ```"),
        ("None", "`None`", "`None`"),
    ],
)
def test_a_code_span_holds_any_text(text: str, cell: str, inline: str):
    assert markdown_parts.code(text) == cell and markdown_parts.code(text, table=False) == inline


def test_numbers_and_tables():
    assert markdown_parts.fmt(0.12345) == "0.1235" and markdown_parts.fmt(None) == "n/a"
    assert markdown_parts.fmt(2.5, 1) == "2.5" and markdown_parts.count(1234567) == "1,234,567"
    assert markdown_parts.count(None) == "n/a"
    assert markdown_parts.table(["a", "b"], [["1", "2"]]) == ["| a | b |", "| --- | ---: |", "| 1 | 2 |"]
    assert markdown_parts.table(["a", "b"], [], "rl")[1] == "| ---: | --- |"
