"""Shared pieces of the REST API: list envelopes, pagination, the principal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Schema

from portal.core.principal import Principal

MAX_LIMIT = 500
# Far beyond any real list, and small enough for LIMIT/OFFSET on both databases.
MAX_OFFSET = 2**31 - 1


class ValidationIssueOut(Schema):
    """One refused field or parameter, as the request validation reports it."""

    type: str
    loc: list[str | int]  # where: ["body", "payload", "name"], ["query", "limit"], …
    msg: str
    ctx: dict[str, Any] | None = None


class ErrorOut(Schema):
    """Every error answer: a message, or for invalid fields (422) the list of issues."""

    detail: str | list[ValidationIssueOut]


def principal_of(request: HttpRequest) -> Principal:
    return request.auth  # type: ignore[attr-defined,return-value]


def page[T](
    qs: QuerySet[T],
    *,
    limit: int,
    offset: int,
    shape: Callable[[list[T]], list[Any]] | None = None,
) -> dict[str, Any]:
    """``{"items": [...], "count": N}`` for one page of ``qs``: the envelope of every API
    list (``limit`` and ``offset`` in the query, the total for paging).

    ``shape`` turns the page's rows into what the list's schema reads, all of them at once,
    so it can fetch what they need in one query (their partners' currencies); without it
    the rows themselves are the items. The page is read before the count.
    """
    rows = list(qs[offset : offset + limit])
    return {"items": shape(rows) if shape is not None else rows, "count": qs.count()}
