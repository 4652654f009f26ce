"""How every page view is wrapped: login, principal, and domain errors as pages."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from portal.accounts.policies import CLIENT_REFUSAL, refuse
from portal.core.errors import Conflict, DomainError, NotFound
from portal.core.localtime import zone
from portal.core.retry import is_conflict
from portal.web.principal import partner_for, principal_for

View = Callable[..., HttpResponse]

LOST_RACE = "Another change to the same objects happened at the same time; retry."


# The pages a partner's client opens (domain §8.2): Sub-accounts, Lines, Analytics and
# Statements, read only, and its own Notifications (domain §8.4: every person has an inbox).
# Each reads through ``visible_to``, which narrows it to the client's sub-accounts (its
# own notifications); every other page answers 403.
CLIENT_PAGES = frozenset(
    {
        "web:home",
        "partners:sub_account_list",
        "partners:sub_account_detail",
        "partners:sub_account_analytics",
        "partners:sub_account_options",
        "lines:line_list",
        "analytics:overview",
        "analytics:comparison_csv",
        "analytics:sub_account",
        "analytics:line_usage_csv",
        "billing:statement_list",
        "billing:statement_detail",
        "billing:statement_csv",
        "billing:statement_pdf",
        "notifications:notification_list",
    }
)

# The only changes a client makes: marking its own notifications read (personal, audited;
# another person's answers 404). Every other POST of a client answers 403.
CLIENT_POSTS = frozenset(
    {
        "notifications:notification_read",
        "notifications:notifications_read_all",
    }
)


def _client_gate(request: HttpRequest) -> None:
    """Refuse a partner's client (403, logged) any page but its own few, and any change
    but marking its notifications read."""
    match = request.resolver_match
    name = match.view_name if match else ""
    if request.method in {"GET", "HEAD"}:
        allowed = name in CLIENT_PAGES
    else:
        allowed = request.method == "POST" and name in CLIENT_POSTS
    if not allowed:
        refuse(CLIENT_REFUSAL)


def portal_view(view: View) -> View:
    """Require a logged-in user; expose ``request.principal``; render refused changes.

    The view runs with the partner's timezone active (UTC with no partner), so the
    ``partner_time`` filter and ``|date`` show local times and dates.

    A :class:`DomainError` becomes the error partial inside an HTMX request (so a
    dialog shows the reason in place) and an error page otherwise, with the
    error's own status: a 404 for another partner's object, 409 for a lock, etc. A
    transaction still losing its race after the service ran it again
    (``retry_on_lost_race``) is a 409 too, as in the API, never a server error.
    """

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            htmx = getattr(request, "htmx", False)
            if htmx:
                # A fragment request after the session ended: send the whole page to the
                # login form (and back here afterwards) instead of swapping it into a dialog.
                response = redirect_to_login(htmx.current_url_abs_path or "/")
                return HttpResponse(status=204, headers={"HX-Redirect": response["Location"]})
            return redirect_to_login(request.get_full_path())
        request.principal = principal_for(request)  # type: ignore[attr-defined]
        partner = partner_for(request)
        with timezone.override(zone(partner.timezone if partner else None)):
            try:
                if request.principal.is_client:  # type: ignore[attr-defined]
                    _client_gate(request)
                return view(request, *args, **kwargs)
            except DomainError as exc:
                return render_error(request, exc)
            except DatabaseError as exc:
                if not is_conflict(exc):
                    raise
                return render_error(request, Conflict(LOST_RACE))

    return wrapped


def render_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    template = "web/_error.html" if getattr(request, "htmx", False) else "web/error.html"
    response = render(
        request, template, {"status": exc.status_code, "detail": exc.detail}, status=exc.status_code
    )
    if getattr(request, "htmx", False):
        # Show the reason where the dialog or form expects its answer.
        response["HX-Retarget"] = "#flash"
        response["HX-Reswap"] = "innerHTML"
    return response


def staff_view(view: View) -> View:
    """A page for provider staff; everyone else gets "not found".

    Staff pages look across every partner, whichever partner the session acts for: their
    times are UTC (and say so); a page about one partner names its zone to ``partner_time``.
    ``request.staff_principal`` is the staff member acting for no partner.
    """

    @portal_view
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        principal = request.principal  # type: ignore[attr-defined]
        if not principal.is_staff:
            raise NotFound("Page not found.")
        request.staff_principal = principal.acting_for(None)  # type: ignore[attr-defined]
        with timezone.override(dt.UTC):
            return view(request, *args, **kwargs)

    return wrapped
