"""The bell on every page: the person's unread count, read lazily (one COUNT over the
partial index of unread rows, and only when the page shows the bell)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import cached_property

from portal.core.principal import Principal
from portal.notifications.policies import can_have_inbox
from portal.notifications.selectors import unread_count
from portal.web.principal import principal_for


class Bell:
    """The unread count, counted the first time a template asks for it."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @cached_property
    def unread(self) -> int:
        return unread_count(principal=self.principal)


def bell(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or user.is_staff:
        return {}
    principal = principal_for(request)
    if principal.scope_partner_id is None or not can_have_inbox(principal):
        return {}
    return {"notification_bell": Bell(principal)}
