"""Alert rules through the API and the services (domain §8.4): who may write them, what is
refused (422 naming each field, 404 for another partner's sub-account or rule, 409 for
too many) with nothing changed, and one audit event per change."""

from __future__ import annotations

import pytest
from django.test import TestCase

from portal.alerts import services
from portal.alerts.models import Alert, AlertRule, AlertStatus
from portal.audit.models import AuditEvent
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound
from portal.partners.models import SubAccount
from tests.conftest import Api
from tests.factories import force_state, make_sub_account

pytestmark = pytest.mark.django_db


def snapshot() -> tuple:
    return (
        list(AlertRule.objects.order_by("pk").values_list()),
        list(Alert.objects.order_by("pk").values_list()),
        AuditEvent.objects.count(),
    )


def test_create_read_change_and_delete_a_rule(tenant):
    api = Api(tenant.keys["manager"])
    alpha = make_sub_account(tenant.partner, "Alpha")
    body = {
        "metric": "volume_limit_usage",
        "comparator": "above",
        "threshold": "0.8",
        "window_days": 7,
        "sub_account_id": alpha.pk,
    }
    created = api.post("/alert-rules", body)
    assert created.status_code == 201, created.content
    rule = created.json()
    assert rule["threshold"] == 0.8 and rule["sub_account_id"] == alpha.pk and rule["enabled"]
    assert api.get(f"/alert-rules/{rule['id']}").json() == rule
    listed = api.get("/alert-rules").json()
    assert listed["count"] == 1 and listed["items"] == [rule]

    changed = api.patch(f"/alert-rules/{rule['id']}", {"threshold": 0.9, "window_days": 3})
    assert changed.status_code == 200, changed.content
    assert changed.json()["threshold"] == 0.9 and changed.json()["window_days"] == 3

    deleted = api.call("DELETE", f"/alert-rules/{rule['id']}")
    assert deleted.status_code == 204
    assert api.get(f"/alert-rules/{rule['id']}").status_code == 404
    assert api.get("/alert-rules").json()["count"] == 0
    # Deleted, not erased: the rule stays as its alerts' history.
    assert AlertRule.objects.get(pk=rule["id"]).deleted_at is not None

    events = AuditEvent.objects.filter(object_type="alert_rule", object_id=str(rule["id"]))
    assert list(events.order_by("pk").values_list("action", flat=True)) == [
        "alert_rule.create",
        "alert_rule.update",
        "alert_rule.delete",
    ]
    update = events.get(action="alert_rule.update")
    assert update.data == {
        "before": {"threshold": "0.8", "window_days": 7},
        "after": {"threshold": "0.9", "window_days": 3},
    }


def test_counts_take_whole_numbers_and_strings_and_partner_wide_is_the_default(tenant):
    api = Api(tenant.keys["admin"])
    made = api.ok_post(
        "/alert-rules", {"metric": "available_lines", "comparator": "below", "threshold": "5"}
    )
    assert made["threshold"] == 5 and made["sub_account_id"] is None and made["window_days"] == 7
    each = api.ok_post(
        "/alert-rules",
        {"metric": "over_pressured_line_days", "comparator": "above", "threshold": 0},
    )
    assert each["threshold"] == 0 and each["sub_account_id"] is None


def test_a_patch_that_changes_nothing_records_nothing(tenant):
    api = Api(tenant.keys["admin"])
    rule = api.ok_post(
        "/alert-rules", {"metric": "response_rate", "comparator": "below", "threshold": 0.2}
    )
    before = AuditEvent.objects.count()
    same = api.patch(f"/alert-rules/{rule['id']}", {"threshold": "0.20", "comparator": "below"})
    assert same.status_code == 200
    assert AuditEvent.objects.count() == before


BAD_BODIES = [
    ({"metric": "revenue", "comparator": "above", "threshold": 1}, "metric"),
    ({"metric": "response_rate", "comparator": "over", "threshold": 0.5}, "comparator"),
    ({"metric": "response_rate", "comparator": "above", "threshold": 1.5}, "threshold"),
    ({"metric": "response_rate", "comparator": "above", "threshold": -0.1}, "threshold"),
    ({"metric": "response_rate", "comparator": "above", "threshold": "0.12345"}, "threshold"),
    ({"metric": "response_rate", "comparator": "above", "threshold": "lots"}, "threshold"),
    ({"metric": "response_rate", "comparator": "above", "threshold": "NaN"}, "threshold"),
    ({"metric": "response_rate", "comparator": "above", "threshold": True}, "threshold"),
    ({"metric": "response_rate", "comparator": "above", "threshold": 1}, "threshold"),
    ({"metric": "response_rate", "comparator": "below", "threshold": 0}, "threshold"),
    ({"metric": "volume_limit_usage", "comparator": "above", "threshold": 11}, "threshold"),
    ({"metric": "available_lines", "comparator": "below", "threshold": 2.5}, "threshold"),
    ({"metric": "available_lines", "comparator": "below", "threshold": 10**10}, "threshold"),
    (
        {"metric": "response_rate", "comparator": "above", "threshold": 0.5, "window_days": 0},
        "window_days",
    ),
    (
        {"metric": "response_rate", "comparator": "above", "threshold": 0.5, "window_days": 91},
        "window_days",
    ),
    (
        {"metric": "response_rate", "comparator": "above", "threshold": 0.5, "window_days": "7"},
        "window_days",
    ),
    (
        {"metric": "response_rate", "comparator": "above", "threshold": 0.5, "colour": "red"},
        "colour",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_rules_are_refused_with_the_field_named_and_nothing_changes(tenant, body, field):
    api = Api(tenant.keys["admin"])
    before = snapshot()
    response = api.post("/alert-rules", body)
    assert response.status_code == 422, response.content
    assert field.split("_")[0] in str(response.json()["detail"]).lower()
    assert snapshot() == before


def test_every_refused_field_is_named_at_once(tenant):
    with pytest.raises(Invalid) as refused:
        services.alert_rule_create(
            principal=tenant.principal("admin"),
            metric="response_rate",
            comparator="sideways",
            threshold="x",
            window_days=400,
        )
    assert set(refused.value.errors) == {"comparator", "threshold", "window_days"}


def test_sub_accounts_that_cannot_be_watched(tenant, other_tenant):
    api = Api(tenant.keys["admin"])
    body = {"metric": "response_rate", "comparator": "below", "threshold": 0.2}
    theirs = make_sub_account(other_tenant.partner, "Theirs")
    before = snapshot()
    foreign = api.post("/alert-rules", {**body, "sub_account_id": theirs.pk})
    missing = api.post("/alert-rules", {**body, "sub_account_id": 987654321})
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"].replace(str(theirs.pk), "X") == missing.json()[
        "detail"
    ].replace("987654321", "X")
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")
    assert api.post("/alert-rules", {**body, "sub_account_id": pool.pk}).status_code == 422
    merged = force_state(make_sub_account(tenant.partner, "Gone"), status="merged")
    refused = api.post("/alert-rules", {**body, "sub_account_id": merged.pk})
    assert refused.status_code == 422 and "merged" in refused.json()["detail"]
    mine = make_sub_account(tenant.partner, "Mine")
    partner_wide = api.post(
        "/alert-rules",
        {
            "metric": "available_lines",
            "comparator": "below",
            "threshold": 3,
            "sub_account_id": mine.pk,
        },
    )
    assert partner_wide.status_code == 422 and "sub_account_id" in str(partner_wide.json())
    assert snapshot()[0] == before[0]


def test_patches_are_checked_whole(tenant):
    api = Api(tenant.keys["admin"])
    rule = api.ok_post(
        "/alert-rules", {"metric": "volume_limit_usage", "comparator": "above", "threshold": 0.8}
    )
    before = snapshot()
    # 0.8 is no count of line-days: the new metric needs a new threshold too.
    refused = api.patch(f"/alert-rules/{rule['id']}", {"metric": "over_pressured_line_days"})
    assert refused.status_code == 422 and "threshold" in refused.json()["detail"]
    assert api.patch(f"/alert-rules/{rule['id']}", {"enabled": None}).status_code == 422
    assert api.patch(f"/alert-rules/{rule['id']}", {"threshold": None}).status_code == 422
    assert snapshot() == before
    ok = api.patch(
        f"/alert-rules/{rule['id']}", {"metric": "over_pressured_line_days", "threshold": 2}
    )
    assert ok.status_code == 200 and ok.json()["threshold"] == 2


def test_roles_and_another_partners_rule(tenant, other_tenant):
    rule = Api(tenant.keys["admin"]).ok_post(
        "/alert-rules", {"metric": "response_rate", "comparator": "below", "threshold": 0.2}
    )
    before = snapshot()
    for role in ("billing", "viewer"):
        api = Api(tenant.keys[role])
        assert api.get("/alert-rules").status_code == 200
        assert api.get("/alerts").status_code == 200
        assert (
            api.post(
                "/alert-rules", {"metric": "response_rate", "comparator": "below", "threshold": 0.1}
            ).status_code
            == 403
        )
        assert api.patch(f"/alert-rules/{rule['id']}", {"threshold": 0.1}).status_code == 403
        assert api.call("DELETE", f"/alert-rules/{rule['id']}").status_code == 403
    intruder = Api(other_tenant.keys["admin"])
    assert intruder.get(f"/alert-rules/{rule['id']}").status_code == 404
    assert intruder.patch(f"/alert-rules/{rule['id']}", {"threshold": 0.1}).status_code == 404
    assert intruder.call("DELETE", f"/alert-rules/{rule['id']}").status_code == 404
    assert intruder.get("/alert-rules").json()["count"] == 0
    assert snapshot()[:2] == before[:2]


def test_alert_list_filters(tenant):
    api = Api(tenant.keys["viewer"])
    assert api.get("/alerts", status="firing").json() == {"items": [], "count": 0}
    assert api.get("/alerts", status="lost").status_code == 400
    assert api.get("/alerts", rule_id=987654321).json()["count"] == 0


class RuleLimitTest(TestCase):
    def test_a_partner_has_at_most_so_many_rules(self):
        from tests.factories import make_tenant

        tenant = make_tenant("Busy Rules")
        principal = tenant.principal("admin")
        for _ in range(services.MAX_RULES):
            services.alert_rule_create(
                principal=principal, metric="available_lines", comparator="below", threshold=1
            )
        with pytest.raises(Conflict):
            services.alert_rule_create(
                principal=principal, metric="available_lines", comparator="below", threshold=1
            )
        with pytest.raises(Forbidden):
            services.alert_rule_create(
                principal=tenant.principal("viewer"),
                metric="available_lines",
                comparator="below",
                threshold=1,
            )
        with pytest.raises(NotFound):
            services.alert_rule_delete(principal=principal, rule_id="nonsense")


def test_firing_alerts_resolve_when_their_rule_changes_pauses_or_goes(tenant):
    from portal.alerts.evaluation import EVALUATOR, alerts_evaluate

    api = Api(tenant.keys["admin"])
    # Available holds no lines: "fewer than 1" is true at once, for each of three rules.
    rules = [
        api.ok_post(
            "/alert-rules", {"metric": "available_lines", "comparator": "below", "threshold": 1}
        )
        for _ in range(3)
    ]
    report = alerts_evaluate(principal=EVALUATOR.acting_for(tenant.partner.pk))
    assert report.fired == 3
    api.patch(f"/alert-rules/{rules[0]['id']}", {"threshold": 2})
    api.patch(f"/alert-rules/{rules[1]['id']}", {"enabled": False})
    api.call("DELETE", f"/alert-rules/{rules[2]['id']}")
    because = dict(Alert.objects.values_list("rule_id", "resolved_because"))
    assert because == {
        rules[0]["id"]: "rule_changed",
        rules[1]["id"]: "rule_disabled",
        rules[2]["id"]: "rule_deleted",
    }
    assert not Alert.objects.filter(status=AlertStatus.FIRING).exists()
    resolved = AuditEvent.objects.filter(action="alert.resolve")
    assert resolved.count() == 3
    # Resolved by the person who changed the rule, in their name.
    assert {e.actor_type for e in resolved} == {"api_key"}
    # The changed rule fires again under its new condition at the next evaluation; the
    # paused and deleted ones do not.
    report = alerts_evaluate(principal=EVALUATOR.acting_for(tenant.partner.pk))
    assert report.fired == 1
    assert Alert.objects.get(status=AlertStatus.FIRING).rule_id == rules[0]["id"]
