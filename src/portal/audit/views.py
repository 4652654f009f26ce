"""The Audit log page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.accounts.principal import Principal
from portal.audit.forms import ACTIONS, AuditFilterForm
from portal.audit.models import AuditEvent
from portal.audit.selectors import audit_event_list
from portal.lines.forms import sub_account_choices
from portal.partners.models import SubAccount, SubAccountKind
from portal.web.decorators import portal_view

PAGE_SIZE = 50
ACTION_LABELS = dict(ACTIONS)


def _describe(principal: Principal, events: list[AuditEvent]) -> None:
    """Give each event a readable action and a "what changed" line, naming sub-accounts."""
    ids = {e.sub_account_id for e in events} | {e.other_sub_account_id for e in events}
    names = {
        pk: ("Available" if kind == SubAccountKind.AVAILABLE else name)
        for pk, name, kind in SubAccount.objects.visible_to(principal)
        .filter(pk__in=[i for i in ids if i])
        .values_list("pk", "name", "kind")
    }

    def show(key: str, value: Any) -> str:
        if key == "sub_account_id":
            return names.get(value, "—") if value else "—"
        return "—" if value in (None, "") else str(value)

    for event in events:
        event.action_label = ACTION_LABELS.get(event.action, event.action)
        before = event.data.get("before") or {}
        after = event.data.get("after") or {}
        parts = []
        for key, value in after.items():
            label = "sub-account" if key == "sub_account_id" else key.replace("_", " ")
            if key in before and before[key] == value:
                continue
            if key in before:
                parts.append(f"{label}: {show(key, before[key])} → {show(key, value)}")
            else:
                parts.append(f"{label}: {show(key, value)}")
        event.summary = "; ".join(parts)
        if event.object_type == "sub_account":
            event.object_label = names.get(event.sub_account_id, f"Sub-account {event.object_id}")


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
    _describe(principal, list(page_obj))
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
