"""Dialogs: HTMX loads a form into the page's one <dialog>; without JavaScript it is a page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme


def back_url(request: HttpRequest, default: str) -> str:
    """Where to return after a dialog: the page it was opened from, if it is ours."""
    candidate = request.POST.get("next") or request.headers.get("HX-Current-URL") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


def dialog_done(request: HttpRequest, url: str) -> HttpResponse:
    """Finish a dialog: reload the page behind it (HTMX) or redirect (no JavaScript)."""
    if request.htmx:  # type: ignore[attr-defined]
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


def render_dialog(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    section: str,
    status: int = 200,
) -> HttpResponse:
    """The dialog's content alone for HTMX; a full page around it without JavaScript.

    Dialog templates extend ``standalone|yesno:"web/base.html,web/dialog.html"``.
    """
    context.setdefault("active_section", section)
    if not request.htmx:  # type: ignore[attr-defined]
        context["standalone"] = True
    return render(request, template, context, status=status)
