"""The Audit log page."""

from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.audit.describe import describe_events
from portal.audit.forms import AuditFilterForm
from portal.audit.selectors import audit_event_list
from portal.lines.forms import sub_account_choices
from portal.web.decorators import portal_view

PAGE_SIZE = 50


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
    data = filters.cleaned_data if filters.is_valid() else {}
    events = audit_event_list(
        principal=principal,
        sub_account_id=data.get("sub_account"),
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
