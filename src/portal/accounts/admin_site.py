"""The Django admin's site: its login is throttled and worded like the portal's."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from portal.accounts.backends import THROTTLED_ATTR
from portal.accounts.forms import AdminLoginForm


class PortalAdminSite(admin.AdminSite):
    """Django's admin site; a login refused while paused says so and answers 429.

    The pause itself is enforced in ``authenticate()`` (``portal.accounts.backends``),
    so the admin's failures and the login page's count together.
    """

    login_form = AdminLoginForm

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().login(request, extra_context)
        if getattr(request, THROTTLED_ATTR, None):
            response.status_code = 429
        return response
