"""Analytics → Alerts: the rules (added, edited and deleted in dialogs, thresholds typed as
percentages), the alerts firing and resolved, who sees which buttons, and a page that
costs as many queries for fifty alerts as for five."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.models import AlertRule
from portal.alerts.services import alert_rule_create
from portal.audit.models import AuditEvent
from tests.factories import SYSTEM, make_lines, make_sub_account, make_user

pytestmark = pytest.mark.django_db


def browser(tenant, role: str) -> Client:
    client = Client()
    client.force_login(make_user(tenant.partner, f"{role}@alerts.example", role))
    return client


def test_a_manager_adds_edits_and_deletes_a_rule(tenant):
    client = browser(tenant, "manager")
    alpha = make_sub_account(tenant.partner, "Alpha")
    page = client.get("/analytics/alerts/").content.decode()
    assert "Add alert rule" in page and "No alert rules yet." in page
    form = client.get("/analytics/alerts/rules/new/").content.decode()
    for label in ("Metric", "Condition", "Threshold", "Window (days)", "Sub-account"):
        assert f">{label}<" in form or f">{label} <" in form, label
    added = client.post(
        "/analytics/alerts/rules/new/",
        {
            "metric": "volume_limit_usage",
            "comparator": "above",
            "threshold": "80 %",
            "window_days": "7",
            "sub_account": str(alpha.pk),
            "enabled": "on",
        },
        HTTP_HX_REQUEST="true",
    )
    assert added.status_code == 204, added.content.decode()[:2000]
    rule = AlertRule.objects.get()
    assert (rule.threshold, rule.sub_account_id, rule.window_days) == (Decimal("0.8"), alpha.pk, 7)
    listed = client.get("/analytics/alerts/").content.decode()
    assert "Volume limit usage above 80\u00a0% over the last 7 days" in listed
    assert "Alpha" in listed

    edit = client.get(f"/analytics/alerts/rules/{rule.pk}/edit/").content.decode()
    assert 'value="80"' in edit
    saved = client.post(
        f"/analytics/alerts/rules/{rule.pk}/edit/",
        {
            "metric": "volume_limit_usage",
            "comparator": "above",
            "threshold": "92.5",
            "window_days": "3",
            "sub_account": "",
        },
        HTTP_HX_REQUEST="true",
    )
    assert saved.status_code == 204
    rule.refresh_from_db()
    assert (rule.threshold, rule.sub_account_id, rule.enabled) == (Decimal("0.925"), None, False)

    assert client.get(f"/analytics/alerts/rules/{rule.pk}/delete/").status_code == 200
    gone = client.post(f"/analytics/alerts/rules/{rule.pk}/delete/", HTTP_HX_REQUEST="true")
    assert gone.status_code == 204
    assert "No alert rules yet." in client.get("/analytics/alerts/").content.decode()
    assert list(
        AuditEvent.objects.filter(object_type="alert_rule").values_list("action", flat=True)
    ) == ["alert_rule.create", "alert_rule.update", "alert_rule.delete"]


def test_refusals_show_in_the_form(tenant):
    client = browser(tenant, "admin")
    refused = client.post(
        "/analytics/alerts/rules/new/",
        {"metric": "response_rate", "comparator": "above", "threshold": "150", "window_days": "7"},
        HTTP_HX_REQUEST="true",
    )
    assert refused.status_code == 422
    assert "Enter a percentage from 0 to 100." in refused.content.decode()
    partner_wide = client.post(
        "/analytics/alerts/rules/new/",
        {
            "metric": "available_lines",
            "comparator": "below",
            "threshold": "2",
            "window_days": "7",
            "sub_account": str(make_sub_account(tenant.partner, "Beta").pk),
        },
        HTTP_HX_REQUEST="true",
    )
    assert partner_wide.status_code == 422
    assert "names no sub-account" in partner_wide.content.decode()
    assert not AlertRule.objects.exists()


def test_readers_see_rules_and_alerts_but_no_buttons(tenant):
    make_lines(tenant.partner, 1)
    rule = alert_rule_create(
        principal=SYSTEM.acting_for(tenant.partner.pk),
        metric="available_lines",
        comparator="above",
        threshold=0,
    )
    alerts_evaluate(principal=EVALUATOR.acting_for(tenant.partner.pk))
    viewer = browser(tenant, "viewer")
    page = viewer.get("/analytics/alerts/").content.decode()
    assert "Lines in Available above 0" in page and "Firing (1)" in page
    assert "Add alert rule" not in page and "/edit/" not in page
    assert viewer.post("/analytics/alerts/rules/new/", {}).status_code == 403
    assert viewer.get(f"/analytics/alerts/rules/{rule.pk}/edit/").status_code == 403
    assert viewer.post(f"/analytics/alerts/rules/{rule.pk}/delete/").status_code == 403
    assert AlertRule.objects.get().deleted_at is None
    resolved = viewer.get("/analytics/alerts/?status=resolved").content.decode()
    assert "No alerts here." in resolved and 'aria-current="page">Resolved (0)' in resolved


def _alerts(tenant, count: int) -> None:
    for i in range(count - AlertRule.objects.filter(partner=tenant.partner).count()):
        alert_rule_create(
            principal=SYSTEM.acting_for(tenant.partner.pk),
            metric="available_lines",
            comparator="below",
            threshold=1000 + i,
        )
    alerts_evaluate(principal=EVALUATOR.acting_for(tenant.partner.pk))


def test_the_page_runs_as_many_queries_for_fifty_alerts_as_for_five(tenant):
    client = browser(tenant, "admin")
    counts = []
    for total in (5, 50):
        _alerts(tenant, total)
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/analytics/alerts/?status=all").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
