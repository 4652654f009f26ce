"""Sortable table headings: each column's sort link and ``aria-sort``, shared by every
table whose headings sort it (Analytics' comparison and per-line usage, Sub-accounts).
The template is ``web/_sort_head.html``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    value: Callable[[Any], Any] | None = None  # the sort key, when sorted in Python
    numeric: bool = True
    hide_sm: bool = False


def direction_words(column: Column, *, descending: bool) -> str:
    """What following a column's sort link does, for screen readers."""
    if column.numeric:
        return "largest first" if descending else "smallest first"
    return "Z to A" if descending else "A to Z"


def sort_headers(columns: list[Column], sort: str, base: dict[str, str]) -> list[dict[str, Any]]:
    """Each column's sort link and ``aria-sort``: numbers sort largest first on first click.
    ``base`` is the rest of the page's query (filters, dates), kept by every link."""
    headers = []
    for c in columns:
        if sort.removeprefix("-") == c.key:
            state = "descending" if sort.startswith("-") else "ascending"
            following = c.key if state == "descending" else f"-{c.key}"
        else:
            state = None
            following = f"-{c.key}" if c.numeric else c.key
        headers.append(
            {
                "column": c,
                "aria_sort": state,
                "query": urlencode({**base, "sort": following}),
                "next_label": direction_words(c, descending=following.startswith("-")),
            }
        )
    return headers
