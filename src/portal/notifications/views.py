"""Pages: Notifications (the inbox, newest first, unread marked), Mark read, Mark all read."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.notifications import selectors, services
from portal.web.decorators import portal_view

PAGE_SIZE = 25


@portal_view
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    """The person's inbox, a page at a time (two queries: the page and the count)."""
    principal = request.principal  # type: ignore[attr-defined]
    unread_only = request.GET.get("show") == "unread"
    rows = selectors.notification_list(principal=principal, unread=unread_only)
    page_obj = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/notification_list.html",
        {
            "page_obj": page_obj,
            "unread_only": unread_only,
            "query_prefix": "show=unread&" if unread_only else "",
            "active_section": "notifications",
            "has_inbox": not principal.is_staff,
        },
    )


@portal_view
@require_POST
def notification_read(request: HttpRequest, notification_id: int) -> HttpResponse:
    """Mark read; an HTMX request gets the row back, marked, and the bell's new count."""
    principal = request.principal  # type: ignore[attr-defined]
    row = services.notification_read(principal=principal, notification_id=notification_id)
    if getattr(request, "htmx", False):
        return render(
            request,
            "notifications/_row.html",
            {"n": row, "unread": selectors.unread_count(principal=principal)},
        )
    return redirect("notifications:notification_list")


@portal_view
@require_POST
def notifications_read_all(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    marked = services.notifications_read_all(principal=principal)
    if marked:
        messages.success(request, f"{marked} notification{'s' if marked != 1 else ''} marked read.")
    return redirect("notifications:notification_list")
