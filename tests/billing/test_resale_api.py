"""Resale prices through the API (domain §8.1): ``GET, PATCH /billing/resale`` and
``resale_price`` on the SubAccount shape and its PATCH."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from portal.audit.models import AuditEvent
from portal.billing.models import ResalePriceChange
from portal.billing.resale import resale_settings
from portal.core.clock import frozen_at
from portal.partners.models import SubAccount
from portal.partners.selectors import available_pool
from tests.conftest import Api
from tests.factories import db_snapshot, make_sub_account, make_tenant

JULY_10 = dt.datetime(2026, 7, 10, 12, tzinfo=dt.UTC)


def changes() -> list[tuple]:
    return list(ResalePriceChange.objects.order_by("pk").values_list("sub_account_id", "price"))


def test_the_default_is_set_from_the_next_cycle(tenant):
    admin = Api(tenant.keys["admin"])
    with frozen_at(JULY_10):
        assert admin.get("/billing/resale").json() == {
            "currency": "USD",
            "period_month": "2026-07",
            "default_resale_price": None,
            "effective_month": None,
            "in_force": None,
        }
        answer = admin.patch("/billing/resale", {"default_resale_price": "80"})
        assert answer.status_code == 200, answer.content
        assert answer.json() == {
            "currency": "USD",
            "period_month": "2026-07",
            "default_resale_price": "80.00",
            "effective_month": "2026-08",
            "in_force": None,
        }
    event = AuditEvent.objects.get(action="resale_price.set")
    assert event.data["after"] == {"resale_price": "80.00"}
    assert event.data["effective_month"] == "2026-08"
    # In August it is in force, and nothing is pending any more.
    with frozen_at(JULY_10 + dt.timedelta(days=30)):
        assert admin.get("/billing/resale").json() == {
            "currency": "USD",
            "period_month": "2026-08",
            "default_resale_price": "80.00",
            "effective_month": None,
            "in_force": "80.00",
        }
        # Omitted: nothing changes; null clears it from September.
        assert admin.patch("/billing/resale", {}).json()["default_resale_price"] == "80.00"
        cleared = admin.patch("/billing/resale", {"default_resale_price": None}).json()
    assert cleared["default_resale_price"] is None
    assert (cleared["effective_month"], cleared["in_force"]) == ("2026-09", "80.00")
    assert AuditEvent.objects.filter(action="resale_price.set").count() == 2


@pytest.mark.parametrize(
    "body",
    [
        {"default_resale_price": "-1"},
        {"default_resale_price": "80.001"},
        {"default_resale_price": "eighty"},
        {"default_resale_price": True},
        {"default_resale_price": "1e9"},
        {"default_resale_price": "80", "other": 1},
    ],
)
def test_a_bad_default_changes_nothing(tenant, body):
    admin = Api(tenant.keys["admin"])
    before = db_snapshot()
    answer = admin.patch("/billing/resale", body)
    assert answer.status_code == 422, answer.content
    assert answer.json()["detail"]
    assert db_snapshot() == before
    assert changes() == []


def test_yen_prices_take_no_decimals(db):
    tenant = make_tenant("Tokyo Lines", currency="JPY", timezone="Asia/Tokyo")
    admin = Api(tenant.keys["admin"])
    assert admin.patch("/billing/resale", {"default_resale_price": "12.5"}).status_code == 422
    assert admin.patch("/billing/resale", {"default_resale_price": 8000}).status_code == 200
    assert admin.get("/billing/resale").json()["default_resale_price"] == "8000"


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_roles_without_billing_may_not_read_or_set_it(tenant, role):
    client = Api(tenant.keys[role])
    assert client.get("/billing/resale").status_code == 403
    before = db_snapshot()
    assert client.patch("/billing/resale", {"default_resale_price": "80"}).status_code == 403
    assert db_snapshot() == before and changes() == []


# --- The SubAccount shape -------------------------------------------------------------------


def test_resale_price_is_shown_to_roles_that_read_billing_only(tenant):
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    assert Api(tenant.keys["admin"]).patch(f"/sub-accounts/{a.pk}", {"resale_price": "80.5"})
    for role in ("admin", "billing"):
        client = Api(tenant.keys[role])
        listed = {s["name"]: s for s in client.get("/sub-accounts").json()["items"]}
        assert listed["A"]["resale_price"] == "80.50"
        assert listed["B"]["resale_price"] is None  # the partner's default
        assert listed["Available"]["resale_price"] is None
        assert client.get(f"/sub-accounts/{b.pk}").json()["resale_price"] is None
    for role in ("manager", "viewer"):
        client = Api(tenant.keys[role])
        listed = client.get("/sub-accounts").json()["items"]
        assert all("resale_price" not in s for s in listed)
        assert "resale_price" not in client.get(f"/sub-accounts/{a.pk}").json()
        assert "merged_into_id" in client.get(f"/sub-accounts/{a.pk}").json()
    created = Api(tenant.keys["admin"]).post("/sub-accounts", {"name": "C"}).json()
    assert created["resale_price"] is None
    created = Api(tenant.keys["manager"]).post("/sub-accounts", {"name": "D"}).json()
    assert "resale_price" not in created


def test_the_list_reads_every_price_in_one_query(tenant, django_assert_max_num_queries):
    subs = [make_sub_account(tenant.partner, f"Client {i}") for i in range(12)]
    admin = Api(tenant.keys["admin"])
    for i, sub in enumerate(subs):
        admin.patch(f"/sub-accounts/{sub.pk}", {"resale_price": str(60 + i)})
    admin.get("/sub-accounts")  # bookkeeping (the key's last use) falls here
    with django_assert_max_num_queries(8) as captured:
        listed = admin.get("/sub-accounts").json()["items"]
    assert sum("billing_resalepricechange" in q["sql"] for q in captured.captured_queries) == 1
    assert {s["name"]: s["resale_price"] for s in listed if s["kind"] == "standard"} == {
        f"Client {i}": f"{60 + i}.00" for i in range(12)
    }


def test_patch_sets_the_price_and_the_fields_together(tenant):
    a = make_sub_account(tenant.partner, "A")
    admin = Api(tenant.keys["admin"])
    with frozen_at(JULY_10):
        answer = admin.patch(
            f"/sub-accounts/{a.pk}", {"contact_name": "Ada", "resale_price": "80.00"}
        )
    assert answer.status_code == 200, answer.content
    assert answer.json()["contact_name"] == "Ada"
    assert answer.json()["resale_price"] == "80.00"
    assert resale_settings(tenant.partner.pk).override_of(a.pk) == Decimal("80.00")
    assert ResalePriceChange.objects.get().effective_month == dt.date(2026, 8, 1)
    events = AuditEvent.objects.filter(sub_account_id=a.pk)
    actions = sorted(events.values_list("action", flat=True))
    assert actions == ["resale_price.set", "sub_account.create", "sub_account.update"]
    # null returns it to the partner's default; the same price again changes nothing.
    cleared = admin.patch(f"/sub-accounts/{a.pk}", {"resale_price": None})
    assert cleared.json()["resale_price"] is None
    assert admin.patch(f"/sub-accounts/{a.pk}", {"resale_price": None}).status_code == 200
    assert changes() == [(a.pk, Decimal("80.00")), (a.pk, None)]


def test_billing_people_set_the_price_but_not_the_fields(tenant):
    a = make_sub_account(tenant.partner, "A")
    billing = Api(tenant.keys["billing"])
    assert billing.patch(f"/sub-accounts/{a.pk}", {"resale_price": "70"}).status_code == 200
    before = db_snapshot()
    both = billing.patch(f"/sub-accounts/{a.pk}", {"resale_price": "75", "name": "Renamed"})
    assert both.status_code == 403, both.content
    assert db_snapshot() == before
    assert changes() == [(a.pk, Decimal("70.00"))]


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_other_roles_may_not_set_the_price(tenant, role):
    a = make_sub_account(tenant.partner, "A")
    client = Api(tenant.keys[role])
    before = db_snapshot()
    for body in ({"resale_price": "70"}, {"resale_price": None, "contact_name": "X"}):
        answer = client.patch(f"/sub-accounts/{a.pk}", body)
        assert answer.status_code == 403, answer.content
    assert db_snapshot() == before and changes() == []


@pytest.mark.parametrize("price", ["-1", "80.001", "eighty", "NaN", "Infinity", 1e400, ""])
def test_a_bad_price_changes_nothing_not_even_the_other_fields(tenant, price):
    a = make_sub_account(tenant.partner, "A")
    admin = Api(tenant.keys["admin"])
    before = db_snapshot()
    answer = admin.patch(f"/sub-accounts/{a.pk}", {"contact_name": "Ada", "resale_price": price})
    if price == "":  # an empty string clears, like null: nothing to clear
        assert answer.status_code == 200
        return
    assert answer.status_code == 422, answer.content
    assert db_snapshot() == before and changes() == []


def test_every_refused_field_is_reported_at_once(tenant):
    a = make_sub_account(tenant.partner, "A")
    answer = Api(tenant.keys["admin"]).patch(
        f"/sub-accounts/{a.pk}", {"contact_email": "not an email", "resale_price": "-5"}
    )
    assert answer.status_code == 422
    assert "Resale price" in answer.json()["detail"]
    assert "Contact email" in answer.json()["detail"]


def test_available_has_no_resale_price(tenant):
    pool = available_pool(tenant.partner.pk)
    admin = Api(tenant.keys["admin"])
    before = db_snapshot()
    for price in ("80.00", None):
        answer = admin.patch(f"/sub-accounts/{pool.pk}", {"notes": "x", "resale_price": price})
        assert answer.status_code == 422, answer.content
    assert db_snapshot() == before and changes() == []


def test_a_merged_sub_account_keeps_its_price(tenant):
    a = make_sub_account(tenant.partner, "A")
    SubAccount.objects.filter(pk=a.pk).update(status="merged")
    answer = Api(tenant.keys["admin"]).patch(f"/sub-accounts/{a.pk}", {"resale_price": "70"})
    assert answer.status_code == 409
    assert changes() == []


def test_another_partners_sub_account_answers_like_a_missing_one(tenant, other_tenant):
    theirs = make_sub_account(other_tenant.partner, "Theirs")
    admin = Api(tenant.keys["admin"])
    before = db_snapshot()
    foreign = admin.patch(f"/sub-accounts/{theirs.pk}", {"resale_price": "70"})
    missing = admin.patch("/sub-accounts/987654321", {"resale_price": "70"})
    assert foreign.status_code == missing.status_code == 404
    assert db_snapshot() == before and changes() == []


def test_staff_set_prices_for_the_partner_they_name(tenant, staff_key):
    a = make_sub_account(tenant.partner, "A")
    staff = Api(staff_key)
    slug = tenant.partner.slug
    answer = staff.patch(f"/sub-accounts/{a.pk}?partner={slug}", {"resale_price": "70"})
    assert answer.status_code == 200, answer.content
    assert answer.json()["resale_price"] == "70.00"
    answer = staff.patch(f"/billing/resale?partner={slug}", {"default_resale_price": "60"})
    assert answer.json()["default_resale_price"] == "60.00"
    assert staff.get("/billing/resale").status_code == 400  # no partner named
