"""The Audit log page."""

from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from portal.audit.describe import describe_events
from portal.audit.forms import AuditFilterForm
from portal.audit.selectors import audit_event_list
from portal.core.errors import NotFound
from portal.partners.choices import (
    NOT_PURGED,
    name_suggestions,
    resolve_sub_account,
    sub_account_choices,
)
from portal.web.decorators import portal_view

PAGE_SIZE = 50
OPTIONS_ID = "audit-sub-account-options"


def _name_filter(filters: AuditFilterForm, principal) -> None:  # type: ignore[no-untyped-def]
    """Too many sub-accounts for a select: a "Sub-account" search field with suggestions,
    its typed name resolved within the partner to the hidden ``sub_account`` id."""
    field = forms.CharField(label="Sub-account", required=False, max_length=120)
    field.help_text = "Type part of the name and pick a suggestion."
    field.widget.attrs.update(
        {
            "list": OPTIONS_ID,
            "autocomplete": "off",
            "hx-get": reverse("audit:sub_account_options"),
            "hx-trigger": "input changed delay:250ms",
            "hx-target": f"#{OPTIONS_ID}",
            "hx-swap": "outerHTML",
            "hx-include": "this",
            "aria-describedby": "id_sub_account_name_hint",
        }
    )
    filters.fields["sub_account_name"] = field


def _resolved(data: dict, principal, filters: AuditFilterForm) -> int | None:  # type: ignore[no-untyped-def]
    """The sub-account to filter by: the select's id, or the typed name's among every
    sub-account whose events the log can show (all but purged ones)."""
    name = (data.get("sub_account_name") or "").strip()
    if not name:
        return data.get("sub_account")
    try:
        return resolve_sub_account(principal, name, statuses=NOT_PURGED, ids=False)
    except NotFound as exc:
        filters.add_error("sub_account_name", str(exc.detail))
        return 0  # no such id: the log shows nothing rather than everything


@portal_view
def sub_account_options(request: HttpRequest) -> HttpResponse:
    """Name suggestions for the log's "Sub-account" filter, merged and pending ones too."""
    return name_suggestions(
        request,
        request.principal,  # type: ignore[attr-defined]
        statuses=NOT_PURGED,
        lists=(OPTIONS_ID,),
        field="sub_account_name",
    )


@portal_view
def audit_log(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    filters = AuditFilterForm(request.GET or None)
    choices = sub_account_choices(principal, include_pool=True, active_only=False)
    if choices is not None:
        filters.fields["sub_account"] = forms.TypedChoiceField(
            label="Sub-account",
            required=False,
            coerce=int,
            empty_value=None,
            choices=[("", "All sub-accounts"), *choices[1:]],
        )
    else:
        _name_filter(filters, principal)
    data = filters.cleaned_data if filters.is_valid() else {}
    sub_account_id = _resolved(data, principal, filters) if data else None
    events = audit_event_list(
        principal=principal,
        sub_account_id=sub_account_id,
        line_id=data.get("line"),
        action=data.get("action") or None,
    )
    # Counting a large partner's whole log for every page is wasteful: show "Next" by peeking.
    paginator = Paginator(events, PAGE_SIZE)
    page_obj = paginator.get_page(request.GET.get("page"))
    describe_events(principal, page_obj)
    params = request.GET.copy()
    params.pop("page", None)
    template = "audit/audit_log.html"
    if request.htmx and request.htmx.target == "results":  # type: ignore[attr-defined]
        template += "#results"
    return render(
        request,
        template,
        {
            "filters": filters,
            "page_obj": page_obj,
            "query_prefix": (params.urlencode() + "&") if params else "",
            "active_section": "audit",
        },
    )
