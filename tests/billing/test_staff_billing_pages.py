"""Staff → Partners → Billing: price and policies, discounts, credits, finalising."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client

from portal.accounts.services import staff_create
from portal.billing.invoicing import invoice_issue
from portal.billing.models import CreditEntry, Discount, Invoice, InvoiceStatus
from portal.billing.periods import Cycle
from portal.core.clock import frozen_at
from portal.partners.choices import SELECT_LIMIT
from portal.partners.models import Partner, SubAccount
from tests.factories import SYSTEM, make_partner, make_sub_account, make_user

JUNE_20 = dt.datetime(2026, 6, 20, 12, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def world(db):
    partner = make_partner("Page Partner")
    sub = make_sub_account(partner, "Client A")
    cycle = Cycle(2026, 6, "UTC")
    with frozen_at(cycle.start):
        invoice = invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)
    staff = Client()
    staff.force_login(staff_create(principal=SYSTEM, email="ops@provider.example"))
    return partner, sub, invoice, staff


def url(partner: Partner, rest: str = "") -> str:
    return f"/staff/partners/{partner.slug}/billing/{rest}"


def test_the_page_is_linked_from_partners_and_has_labelled_forms(world):
    partner, _, _, staff = world
    listing = staff.get("/staff/partners/").content.decode()
    assert url(partner) in listing
    with frozen_at(JUNE_20):
        page = staff.get(url(partner))
    html = page.content.decode()
    assert page.status_code == 200
    for label in (
        "Price per line per month",
        "Applies to",
        "Number of invoices",
        "Credit to",
        "Reason",
        "Grant discount",
        "Grant credit",
        "Finalize",
        "never changed by a grant",
    ):
        assert label in html, label
    assert 'for="id_credit_reason"' in html and "style=" not in html


def test_staff_grant_a_discount_and_a_credit_and_finalize(world):
    partner, sub, invoice, staff = world
    with frozen_at(JUNE_20):
        granted = staff.post(
            url(partner, "discounts/"),
            {
                "name": "Launch",
                "sub_account": str(sub.pk),
                "kind": "percent",
                "value": "10",
                "first_month": "2026-07",
                "cycles": "3",
            },
        )
        credited = staff.post(
            url(partner, "credits/"), {"amount": "12.50", "sub_account": "", "reason": "Outage"}
        )
        finalized = staff.post(url(partner, f"invoices/{invoice.pk}/finalize/"))
        page = staff.get(url(partner)).content.decode()
    assert granted.status_code == credited.status_code == finalized.status_code == 302
    discount = Discount.objects.get()
    assert (discount.name, discount.sub_account_id, discount.value) == ("Launch", sub.pk, 10)
    assert discount.last_month == dt.date(2026, 9, 1)
    entry = CreditEntry.objects.get()
    assert entry.amount == Decimal("12.50") and entry.sub_account_id is None
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.FINALIZED
    assert "Launch" in page and "Granted: Outage" in page
    with frozen_at(JUNE_20):
        removed = staff.post(url(partner, f"discounts/{discount.pk}/remove/"))
        twice = staff.post(url(partner, f"discounts/{discount.pk}/remove/"), follow=True)
    assert removed.status_code == 302
    assert "already removed" in twice.content.decode()


@pytest.mark.parametrize(
    ("rest", "data", "message"),
    [
        (
            "discounts/",
            {"kind": "percent", "value": "150", "first_month": "2026-07"},
            "at most 100",
        ),
        ("discounts/", {"kind": "amount", "value": "1.005", "first_month": "2026-07"}, "decimals"),
        (
            "discounts/",
            {"kind": "amount", "value": "5", "first_month": "2026-06"},
            "Select a valid",
        ),
        ("credits/", {"amount": "5", "reason": ""}, "required"),
        ("credits/", {"amount": "-5", "reason": "x"}, "greater than or equal"),
        ("settings/", {"line_price": "abc"}, "Enter a number"),
    ],
)
def test_errors_are_shown_in_place_and_nothing_changes(world, rest, data, message):
    partner, _, _, staff = world
    with frozen_at(JUNE_20):
        response = staff.post(url(partner, rest), data)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Discount.objects.exists() and not CreditEntry.objects.exists()
    partner.refresh_from_db()
    assert partner.line_price == Decimal("50.00")


def test_settings_change_the_next_cycles_price(world):
    partner, _, _, staff = world
    with frozen_at(JUNE_20):
        response = staff.post(
            url(partner, "settings/"), {"line_price": "42", "credit_disconnects": "on"}
        )
        page = staff.get(url(partner)).content.decode()
    assert response.status_code == 302
    partner.refresh_from_db()
    assert partner.credit_disconnects and not partner.prorate_new_lines
    assert "42.00 USD" in page and "50.00 USD" in page


def test_partner_users_cannot_reach_the_staff_pages(world):
    partner, _, invoice, _ = world
    admin = Client()
    admin.force_login(make_user(partner, "admin@page.example", "admin"))
    assert admin.get(url(partner)).status_code == 404
    assert admin.post(url(partner, f"invoices/{invoice.pk}/finalize/")).status_code == 404
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.DRAFT


def test_another_partners_invoice_or_discount_is_not_found(world):
    partner, _, _, staff = world
    other = make_partner("Other Page Partner")
    cycle = Cycle(2026, 6, "UTC")
    with frozen_at(cycle.start):
        theirs = invoice_issue(principal=SYSTEM, partner=other, cycle=cycle)
    response = staff.post(url(partner, f"invoices/{theirs.pk}/finalize/"))
    assert response.status_code == 404
    assert Invoice.objects.get(pk=theirs.pk).status == InvoiceStatus.DRAFT


# --- a partner with more sub-accounts than a select holds (issue 18 point 13) ---------


@pytest.fixture
def crowded(world):
    partner, _sub, _invoice, staff = world
    SubAccount.objects.bulk_create(
        SubAccount(partner=partner, name=f"Bulk {i:04d}") for i in range(SELECT_LIMIT + 50)
    )
    last = make_sub_account(partner, "Zulu Client")  # beyond any select's reach
    make_sub_account(make_partner("Elsewhere"), "Zulu Elsewhere")
    return partner, last, staff


def test_a_crowded_partner_s_targets_are_typed_with_suggestions(crowded):
    partner, _last, staff = crowded
    with frozen_at(JUNE_20):
        html = staff.get(url(partner)).content.decode()
    assert 'list="discount-sub-account-options"' in html
    assert 'list="credit-sub-account-options"' in html
    assert "Bulk 0001" not in html  # no select of every sub-account
    options = staff.get(
        url(partner, "sub-account-options/"),
        {"list": "credit-sub-account-options", "sub_account": "zulu"},
    ).content.decode()
    assert "Zulu Client" in options and "Elsewhere" not in options


def test_a_crowded_partner_s_last_sub_account_gets_a_discount_and_a_credit(crowded):
    partner, last, staff = crowded
    with frozen_at(JUNE_20):
        granted = staff.post(
            url(partner, "discounts/"),
            {
                "name": "Deep",
                "sub_account": "zulu client",
                "kind": "percent",
                "value": "5",
                "first_month": "2026-07",
            },
        )
        credited = staff.post(
            url(partner, "credits/"),
            {"amount": "3", "sub_account": "Zulu Client", "reason": "Outage"},
        )
    assert granted.status_code == credited.status_code == 302
    assert Discount.objects.get().sub_account_id == last.pk
    assert CreditEntry.objects.get().sub_account_id == last.pk


@pytest.mark.parametrize("name", ["Nobody Here", "Zulu Elsewhere"])
def test_a_crowded_partner_s_unknown_target_is_refused_in_place(crowded, name):
    partner, _last, staff = crowded
    with frozen_at(JUNE_20):
        refused = staff.post(
            url(partner, "credits/"), {"amount": "3", "sub_account": name, "reason": "x"}
        )
    assert refused.status_code == 422
    assert f"No active sub-account is named “{name}”." in refused.content.decode()
    assert not CreditEntry.objects.exists()
