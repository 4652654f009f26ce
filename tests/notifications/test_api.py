"""GET /notifications, POST /notifications/{id}/read and /notifications/read-all (domain
§8.4): an API key reads its partner's shared inbox, narrowed to the kinds its role reads;
another person's or partner's notification answers like a missing one; bad input is a
clear 4xx and changes nothing; marking read is one audit event."""

from __future__ import annotations

import pytest

from portal.audit.models import AuditEvent
from portal.notifications.models import Kind, Notification
from tests.conftest import Api
from tests.factories import db_snapshot, issue_invoice
from tests.notifications.support import fire_available_alert, make_people

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    people = make_people()
    fire_available_alert(people.partner)
    issue_invoice(people.partner, 2026, 1)
    fire_available_alert(people.rival.partner)
    return people


def keyed(people, role: str = "admin") -> Api:
    return Api(people.tenant.keys[role])


def test_an_admin_key_lists_the_shared_inbox_newest_first(people):
    body = keyed(people).get("/notifications").json()
    assert body["count"] == 2
    # The invoice was issued at its cycle's start (the clock frozen there): older.
    assert [i["kind"] for i in body["items"]] == [Kind.ALERT_TRIGGERED, Kind.INVOICE_ISSUED]
    item = body["items"][1]
    assert set(item) == {"id", "kind", "title", "url", "created_at", "read_at"}
    assert item["read_at"] is None and item["url"].startswith("/invoices/")
    shared = Notification.objects.filter(partner=people.partner, recipient__isnull=True)
    assert {i["id"] for i in body["items"]} == set(shared.values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("role", "kinds"),
    [
        ("manager", {Kind.ALERT_TRIGGERED}),
        ("billing", {Kind.ALERT_TRIGGERED, Kind.INVOICE_ISSUED}),
        ("viewer", {Kind.ALERT_TRIGGERED}),
    ],
)
def test_a_key_sees_only_the_kinds_its_role_reads(people, role, kinds):
    body = keyed(people, role).get("/notifications").json()
    assert {i["kind"] for i in body["items"]} == kinds


def test_read_marks_one_with_one_audit_event_and_unread_filters(people):
    api = keyed(people)
    first = api.get("/notifications").json()["items"][0]
    done = api.ok_post(f"/notifications/{first['id']}/read")
    assert done["id"] == first["id"] and done["read_at"] is not None
    event = AuditEvent.objects.get(action="notification.read")
    assert event.object_id == str(first["id"]) and event.partner_id == people.partner.pk
    # Again: unchanged, no second event.
    assert api.ok_post(f"/notifications/{first['id']}/read")["read_at"] == done["read_at"]
    assert AuditEvent.objects.filter(action="notification.read").count() == 1
    unread = api.get("/notifications", unread="true").json()
    assert unread["count"] == 1 and unread["items"][0]["id"] != first["id"]
    # The shared inbox is shared: another admin key sees it read too.
    assert api.get("/notifications", unread="true").json()["count"] == 1


def test_read_all_marks_every_unread_one_of_the_inbox_only(people):
    api = keyed(people, "manager")  # sees the alert, not the invoice
    assert api.ok_post("/notifications/read-all") == {"marked": 1}
    assert api.get("/notifications", unread="true").json()["count"] == 0
    assert keyed(people).get("/notifications", unread="true").json()["count"] == 1
    people_rows = Notification.objects.filter(recipient__isnull=False, read_at__isnull=False)
    assert not people_rows.exists()  # the people's own inboxes are theirs
    event = AuditEvent.objects.get(action="notification.read_all")
    assert event.data == {"marked": 1}
    assert api.ok_post("/notifications/read-all") == {"marked": 0}
    assert AuditEvent.objects.filter(action="notification.read_all").count() == 1


def test_another_persons_or_partners_notification_answers_like_a_missing_one(people):
    api = keyed(people)
    ada_row = Notification.objects.filter(recipient=people.admin).first()
    rival_row = Notification.objects.filter(partner=people.rival.partner).first()
    invoice_row = Notification.objects.get(
        partner=people.partner, recipient__isnull=True, kind=Kind.INVOICE_ISSUED
    )
    before = db_snapshot()
    missing = api.post("/notifications/987654321/read")
    assert missing.status_code == 404
    for row in (ada_row, rival_row):
        response = api.post(f"/notifications/{row.pk}/read")
        assert response.status_code == 404
        assert response.json()["detail"] == f"Notification {row.pk} not found."
    # A viewer key does not read invoices: not in its inbox either.
    assert keyed(people, "viewer").post(f"/notifications/{invoice_row.pk}/read").status_code == 404
    assert db_snapshot() == before


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/notifications/abc/read", 422),
        ("/notifications/0/read", 404),
        ("/notifications/-1/read", 404),
        ("/notifications/99999999999999999999999/read", 404),
    ],
)
def test_a_bad_id_is_a_clear_4xx_and_changes_nothing(people, path, status):
    before = db_snapshot()
    response = keyed(people).post(path)
    assert response.status_code in ({status, 422} if status == 404 else {status})
    assert response.json()["detail"]
    assert db_snapshot() == before


@pytest.mark.parametrize("query", [{"unread": "maybe"}, {"limit": 0}, {"offset": -1}])
def test_bad_filters_are_422(people, query):
    response = keyed(people).get("/notifications", **query)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_a_body_on_read_all_is_not_needed_and_a_non_json_body_is_415(people):
    response = keyed(people).client.post(
        "/api/v1/notifications/read-all", "x", content_type="text/plain"
    )
    assert response.status_code == 415
    assert Notification.objects.filter(read_at__isnull=False).count() == 0


def test_staff_acting_for_a_partner_read_its_shared_inbox(people, staff_key):
    body = Api(staff_key).get("/notifications", partner=people.partner.slug).json()
    assert body["count"] == 2
