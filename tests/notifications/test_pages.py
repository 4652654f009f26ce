"""The bell on every page (one cheap query), the Notifications page (newest first, unread
marked, paged), Mark read (HTMX or not) and Mark all read; a client's inbox holds only its
statements (tests/notifications/test_client_inbox.py) and a staff user has no partner
inbox."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal.accounts.models import User
from portal.notifications.drafts import Draft
from portal.notifications.inbox import notifications_write
from portal.notifications.models import Kind, Notification
from tests.factories import issue_invoice
from tests.notifications.support import fire_available_alert, make_people

pytestmark = pytest.mark.django_db

BELL = re.compile(r'<span id="bell-count" class="bell-count">(\d+)<')


@pytest.fixture
def people():
    people = make_people()
    fire_available_alert(people.partner)
    issue_invoice(people.partner, 2026, 1)
    return people


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def bell(page: str) -> int | None:
    found = BELL.search(page)
    return int(found[1]) if found else None


@pytest.mark.parametrize(
    ("who", "unread"), [("admin", 2), ("manager", 1), ("billing", 1), ("viewer", 0)]
)
def test_the_bell_shows_each_persons_unread_count_on_every_page(people, who, unread):
    client = browser(getattr(people, who))
    for path in ("/sub-accounts/", "/lines/", "/account/password/", "/notifications/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert bell(response.content.decode()) == unread, path


def test_the_bell_costs_one_indexed_count(people):
    client = browser(people.admin)
    client.get("/sub-accounts/")
    with CaptureQueriesContext(connection) as queries:
        client.get("/sub-accounts/")
    ours = [q["sql"] for q in queries if "notifications_notification" in q["sql"]]
    assert len(ours) == 1 and "COUNT(" in ours[0].upper()


def test_a_client_has_its_own_empty_inbox_and_staff_have_no_bell(people):
    # The alert and the invoice are the reseller's: the client's bell counts neither.
    client = browser(people.client)
    page = client.get("/sub-accounts/").content.decode()
    assert bell(page) == 0 and "/notifications/" in page
    page = client.get("/notifications/").content.decode()
    assert "No notifications yet." in page and "Alert" not in page and "Invoice" not in page
    staff = User.objects.create_user(email="sam@provider.example", password="x", is_staff=True)
    page = browser(staff).get("/notifications/").content.decode()
    assert bell(page) is None and "Provider staff have no partner inbox" in page


def test_the_page_lists_newest_first_marks_unread_and_pages(people):
    notifications_write(
        partner_id=people.partner.pk,
        drafts=[
            Draft(Kind.INVOICE_ISSUED, f"Invoice {n} issued", f"/invoices/{n}/", "invoice", str(n))
            for n in range(30)
        ],
    )
    client = browser(people.billing)
    page = client.get("/notifications/").content.decode()
    assert bell(page) == 31
    titles = re.findall(r'<span class="notification-title"><a href="[^"]+">([^<]+)</a>', page)
    assert len(titles) == 25 and titles[0] == "Invoice 29 issued"  # one instant: by id
    assert page.count(">Unread</span>") == 25 and "Page 1 of 2" in page
    second = client.get("/notifications/?page=2").content.decode()
    rest = re.findall(r'<span class="notification-title"><a href="[^"]+">([^<]+)</a>', second)
    assert rest[:5] == [f"Invoice {n} issued" for n in (4, 3, 2, 1, 0)]
    assert rest[5].endswith("issued for January 2026") and "Page 2 of 2" in second
    assert "Mark all read" in page


def test_mark_read_with_and_without_htmx_and_mark_all(people):
    client = browser(people.admin)
    first, second = Notification.objects.filter(recipient=people.admin).order_by("pk")
    done = client.post(f"/notifications/{first.pk}/read/")
    assert done.status_code == 302 and done["Location"] == "/notifications/"
    first.refresh_from_db()
    assert first.read_at is not None
    assert bell(client.get("/notifications/").content.decode()) == 1

    row = client.post(f"/notifications/{second.pk}/read/", HTTP_HX_REQUEST="true")
    html = row.content.decode()
    assert row.status_code == 200 and f'id="notification-{second.pk}"' in html
    assert "Mark read" not in html and 'hx-swap-oob="true">0<' in html

    Notification.objects.filter(pk__in=[first.pk, second.pk]).update(read_at=None)
    client.post("/notifications/read-all/")
    assert not Notification.objects.filter(recipient=people.admin, read_at__isnull=True)
    assert Notification.objects.filter(recipient=people.manager, read_at__isnull=True).exists()
    page = client.get("/notifications/?show=unread").content.decode()
    assert "No unread notifications." in page and bell(page) == 0


def test_another_persons_notification_is_not_found(people):
    theirs = Notification.objects.filter(recipient=people.manager).first()
    client = browser(people.admin)
    assert client.post(f"/notifications/{theirs.pk}/read/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert client.get("/notifications/?page=x").status_code == 200
