"""Analytics → Alerts: the partner's alert rules (add, edit, delete in dialogs) and its
alerts, firing and resolved. Reads go through ``alerts.selectors``, writes through
``alerts.services``; these views pick, word and render."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from portal.accounts.policies import require
from portal.alerts import selectors, services
from portal.alerts.forms import RuleForm
from portal.alerts.models import Alert, AlertRule, AlertStatus, ResolvedBecause
from portal.alerts.policies import can_manage_alert_rules
from portal.alerts.wording import condition_text, value_text
from portal.core.errors import DomainError, Invalid
from portal.partners.choices import resolve_sub_account, sub_account_choices
from portal.web.decorators import portal_view
from portal.web.dialogs import back_url, dialog_done, render_dialog
from portal.web.forms import attach_error

PAGE_SIZE = 50
STATUSES = (
    ("firing", "Firing"),
    ("resolved", "Resolved"),
    ("all", "All"),
)
_dialog = partial(render_dialog, section="analytics")


def _rule_row(rule: AlertRule) -> dict[str, Any]:
    if rule.metric == "available_lines":
        scope = "The partner"
    elif rule.sub_account_id is None:
        scope = "Each sub-account"
    else:
        scope = rule.sub_account.display_name
    return {
        "id": rule.pk,
        "condition": condition_text(rule.metric, rule.comparator, rule.threshold, rule.window_days),
        "scope": scope,
        "sub_account_id": rule.sub_account_id,
        "enabled": rule.enabled,
    }


def _alert_row(alert: Alert) -> dict[str, Any]:
    because = ""
    if alert.resolved_because and alert.resolved_because != ResolvedBecause.CONDITION:
        because = ResolvedBecause(alert.resolved_because).label
    return {
        "id": alert.pk,
        "condition": condition_text(
            alert.metric, alert.comparator, alert.threshold, alert.window_days
        ),
        "sub_account": alert.sub_account.display_name if alert.sub_account_id else "The partner",
        "sub_account_id": alert.sub_account_id if alert.sub_account_id else None,
        "value": value_text(alert.metric, alert.value),
        "firing": alert.status == AlertStatus.FIRING,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
        "resolved_value": value_text(alert.metric, alert.resolved_value)
        if alert.resolved_value is not None
        else "",
        "because": because,
    }


@portal_view
def alert_list(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    status = request.GET.get("status") or "firing"
    if status not in {key for key, _ in STATUSES}:
        status = "firing"
    rules = [_rule_row(r) for r in selectors.alert_rule_list(principal=principal)]
    alerts = selectors.alert_list(principal=principal, status=None if status == "all" else status)
    page_obj = Paginator(alerts, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = selectors.alert_counts(principal=principal)
    filters = [
        {
            "key": key,
            "label": label,
            "count": counts.get(key, sum(counts.values())),
            "current": key == status,
        }
        for key, label in STATUSES
    ]
    return render(
        request,
        "alerts/alert_list.html",
        {
            "active_section": "analytics",
            "analytics_tab": "alerts",
            "rules": rules,
            "can_manage": can_manage_alert_rules(principal),
            "filters": filters,
            "status": status,
            "status_label": dict(STATUSES)[status],
            "page_obj": page_obj,
            "alerts": [_alert_row(a) for a in page_obj],
            "query_prefix": f"status={status}&",
            "evaluation": selectors.alert_evaluation(principal=principal),
        },
    )


def _form(request: HttpRequest, rule: AlertRule | None = None) -> RuleForm:
    principal = request.principal  # type: ignore[attr-defined]
    initial = RuleForm.initial_of(rule) if rule is not None else None
    choices = sub_account_choices(principal, include_pool=False)
    if initial and choices is None and rule is not None and rule.sub_account_id:
        initial["sub_account"] = rule.sub_account.name  # a name field: the name, not the id
    form = RuleForm(request.POST or None, initial=initial)
    form.setup_choices(choices)
    return form


def _fields(request: HttpRequest, form: RuleForm) -> dict[str, Any]:
    """The service's arguments from a valid form (the sub-account resolved by name too)."""
    principal = request.principal  # type: ignore[attr-defined]
    data = form.cleaned_data
    chosen = (data.get("sub_account") or "").strip()
    return {
        "metric": data["metric"],
        "comparator": data["comparator"],
        "threshold": form.threshold_value(),
        "window_days": data["window_days"],
        "sub_account_id": resolve_sub_account(principal, chosen) if chosen else None,
        "enabled": data["enabled"],
    }


def _refused(form: RuleForm, exc: DomainError) -> None:
    if isinstance(exc, Invalid) and "sub_account_id" in exc.errors:
        exc.errors = {
            ("sub_account" if name == "sub_account_id" else name): message
            for name, message in exc.errors.items()
        }
    attach_error(form, exc)


@portal_view
@require_http_methods(["GET", "POST"])
def rule_create(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    require(can_manage_alert_rules(principal), "Your role may not change alert rules.")
    form = _form(request)
    if request.method == "POST" and form.is_valid():
        try:
            services.alert_rule_create(principal=principal, **_fields(request, form))
        except DomainError as exc:
            _refused(form, exc)
        else:
            messages.success(request, "Alert rule added. It is checked within a few minutes.")
            return dialog_done(request, back_url(request, reverse("alerts:alert_list")))
    return _dialog(
        request,
        "alerts/rule_dialog.html",
        {"form": form, "rule": None},
        status=422 if form.errors else 200,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    rule = selectors.alert_rule_get(principal=principal, rule_id=rule_id)
    require(can_manage_alert_rules(principal), "Your role may not change alert rules.")
    form = _form(request, rule)
    if request.method == "POST" and form.is_valid():
        try:
            fields = _fields(request, form)
            services.alert_rule_update(principal=principal, rule_id=rule.pk, **fields)
        except DomainError as exc:
            _refused(form, exc)
        else:
            messages.success(request, "Alert rule saved.")
            return dialog_done(request, back_url(request, reverse("alerts:alert_list")))
    return _dialog(
        request,
        "alerts/rule_dialog.html",
        {"form": form, "rule": _rule_row(rule)},
        status=422 if form.errors else 200,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    rule = selectors.alert_rule_get(principal=principal, rule_id=rule_id)
    require(can_manage_alert_rules(principal), "Your role may not change alert rules.")
    error = ""
    if request.method == "POST":
        try:
            services.alert_rule_delete(principal=principal, rule_id=rule.pk)
        except DomainError as exc:
            error = str(exc.detail)
        else:
            messages.success(request, "Alert rule deleted; its firing alerts are resolved.")
            return dialog_done(request, back_url(request, reverse("alerts:alert_list")))
    return _dialog(
        request,
        "alerts/rule_delete_dialog.html",
        {"rule": _rule_row(rule), "error": error},
        status=409 if error else 200,
    )
