"""API shapes for audit events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ninja import Schema


class AuditEventOut(Schema):
    id: int
    at: dt.datetime
    actor: str
    actor_type: str
    action: str
    object_type: str
    object_id: str
    sub_account_id: int | None
    line_id: int | None
    request_id: str
    ip: str | None
    data: dict[str, Any]

    @staticmethod
    def resolve_actor(obj: Any) -> str:
        return obj.actor_label


class AuditEventListOut(Schema):
    items: list[AuditEventOut]
    count: int
