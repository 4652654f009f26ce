"""API shapes for sub-accounts. ``…In`` for input, ``…Out`` for output."""

from __future__ import annotations

import datetime as dt

from ninja import Schema
from pydantic import ConfigDict


class SubAccountIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    internal_reference: str | None = None
    notes: str | None = None


class SubAccountPatchIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    internal_reference: str | None = None
    notes: str | None = None


class SubAccountOut(Schema):
    id: int
    name: str
    kind: str
    status: str
    line_count: int
    contact_name: str
    contact_email: str
    contact_phone: str
    internal_reference: str
    notes: str
    merged_into_id: int | None
    created_at: dt.datetime


class SubAccountListOut(Schema):
    items: list[SubAccountOut]
    count: int
