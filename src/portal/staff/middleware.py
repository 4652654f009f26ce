"""Staff who act for no partner are asked to choose one before partner pages.

Partner pages (sub-accounts, lines, the audit log, settings) show one partner's
data. Staff belong to no partner: until they pick one in Staff → Partners, those
pages answer with a prompt to choose, instead of mixing every partner's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.core.errors import BadRequest
from portal.partners.models import Partner
from portal.web.decorators import render_error
from portal.web.principal import ACTING_PARTNER_SESSION_KEY

# URL namespace of partner pages -> the navigation item they belong to.
PARTNER_PAGES = {
    "partners": "sub-accounts",
    "lines": "lines",
    "billing": "billing",
    "analytics": "analytics",
    "alerts": "analytics",
    "audit": "audit",
    "settings": "settings",
    "workflows": "requests",
}
PROMPT_PARTNERS = 12


class ChoosePartnerMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff:
            return None
        if request.session.get(ACTING_PARTNER_SESSION_KEY):
            return None
        match = request.resolver_match
        section = next((PARTNER_PAGES[n] for n in match.namespaces if n in PARTNER_PAGES), None)
        if section is None:
            return None
        if request.method != "GET" or getattr(request, "htmx", False):
            return render_error(
                request, BadRequest("Choose a partner to act for first, in Staff → Partners.")
            )
        partners = Partner.objects.order_by("name", "pk").only("pk", "name", "slug")
        return render(
            request,
            "staff/choose_partner.html",
            {
                "active_section": section,
                "partners": partners[:PROMPT_PARTNERS],
                "more": partners.count() > PROMPT_PARTNERS,
                "next": request.get_full_path(),
            },
        )
