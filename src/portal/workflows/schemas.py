"""API shapes for merge and deletion requests. ``…In`` for input, ``…Out`` for output."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from ninja import Schema
from pydantic import ConfigDict, Field, StrictInt

# Ids are StrictInt (as lines/schemas.py): lax parsing would read ``true`` as 1 and
# "5" or 5.0 as 5, so a typo could merge or delete the wrong sub-account.


class MergeRequestIn(Schema):
    model_config = ConfigDict(extra="forbid")

    source_ids: list[StrictInt] = Field(min_length=1, max_length=50)
    target_id: StrictInt
    reason: str | None = None


class DeletionRequestIn(Schema):
    model_config = ConfigDict(extra="forbid")

    sub_account_id: StrictInt
    line_disposition: Literal["move", "disconnect"] | None = None
    move_to_id: StrictInt | None = None
    reason: str | None = None


class DecisionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = None


class RejectionIn(Schema):
    """A rejection must say why: the requester is told the reason."""

    model_config = ConfigDict(extra="forbid")

    reason: str


class SubAccountRefOut(Schema):
    id: int
    name: str
    line_count: int


class MergeSourceOut(Schema):
    sub_account_id: int
    name: str
    line_count: int


class MergeRequestOut(Schema):
    id: int
    status: str
    source_ids: list[int]
    sources: list[MergeSourceOut]
    target_id: int
    target_name: str
    reason: str
    requested_by: str
    created_at: dt.datetime
    decided_by: str
    decided_at: dt.datetime | None
    decision_reason: str
    lines_total: int
    lines_moved: int
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    failure: str


class MergeRequestListOut(Schema):
    items: list[MergeRequestOut]
    count: int


class MergePreviewSourceOut(Schema):
    sub_account_id: int
    name: str
    lines: int


class MergePreviewOut(Schema):
    target: SubAccountRefOut
    sources: list[MergePreviewSourceOut]
    lines_total: int
    billing_effect: str
    analytics_effect: str


class DeletionRequestOut(Schema):
    id: int
    status: str
    sub_account_id: int
    sub_account_name: str
    line_disposition: str | None
    move_to_id: int | None
    reason: str
    requested_by: str
    created_at: dt.datetime
    decided_by: str
    decided_at: dt.datetime | None
    decision_reason: str
    lines_disposed: int
    purge_after: dt.datetime | None
    purged_at: dt.datetime | None
    restored_at: dt.datetime | None


class DeletionRequestListOut(Schema):
    items: list[DeletionRequestOut]
    count: int
