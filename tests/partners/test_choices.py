"""The sub-account pickers' shared pieces (partners.choices): a typed name resolved among
the sub-accounts a picker offers, and the suggestions of every picker drawn from the same
ones, within the principal's partner (staff: the partner they act for)."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.accounts.services import staff_create
from portal.core.errors import NotFound
from portal.partners.choices import ACTIVE, NOT_PURGED, resolve_sub_account
from portal.partners.models import SubAccountStatus
from portal.partners.selectors import available_pool
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, force_state, make_partner, make_sub_account, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    partner = make_partner("Picker Resellers")
    subs = {
        status: force_state(make_sub_account(partner, f"Zulu {status}"), status=status)
        for status in SubAccountStatus.values
    }
    digits = make_sub_account(partner, "2024")
    make_sub_account(make_partner("Picker Rivals"), "Zulu Rival")
    return partner, subs, digits


def refusal(principal, value: str, **kwargs) -> str:
    with pytest.raises(NotFound) as refused:
        resolve_sub_account(principal, value, **kwargs)
    return str(refused.value.detail)


def test_a_name_resolves_among_the_statuses_asked_for(world):
    partner, subs, _digits = world
    me = SYSTEM.acting_for(partner.pk)
    active = subs[SubAccountStatus.ACTIVE]
    assert resolve_sub_account(me, " zulu ACTIVE ") == active.pk
    assert resolve_sub_account(me, "available") == available_pool(partner.pk).pk
    merged = subs[SubAccountStatus.MERGED]
    assert refusal(me, "Zulu merged") == "No active sub-account is named “Zulu merged”."
    assert resolve_sub_account(me, "Zulu merged", statuses=NOT_PURGED) == merged.pk
    pending = subs[SubAccountStatus.PENDING_DELETION]
    assert resolve_sub_account(me, "zulu pending_deletion", statuses=NOT_PURGED) == pending.pk
    purged = refusal(me, "Zulu deleted", statuses=NOT_PURGED)
    assert purged == "No sub-account is named “Zulu deleted”."
    foreign = refusal(me, "Zulu Rival", statuses=NOT_PURGED)
    assert foreign == "No sub-account is named “Zulu Rival”."


def test_digits_are_an_id_from_a_select_unless_the_field_only_holds_names(world):
    partner, _subs, digits = world
    me = SYSTEM.acting_for(partner.pk)
    assert resolve_sub_account(me, "2024") == 2024
    assert resolve_sub_account(me, "2024", ids=False) == digits.pk
    assert resolve_sub_account(me, str(digits.pk), statuses=ACTIVE) == digits.pk


def _client(email: str) -> Client:
    client = Client()
    assert client.login(email=email, password=PASSWORD)
    return client


def _names(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def test_each_picker_suggests_what_it_resolves(world):
    partner, _subs, _digits = world
    make_user(partner, "admin@picker.example", "admin", password=PASSWORD)
    client = _client("admin@picker.example")

    offered = _names(client.get("/sub-accounts/options/", {"sub_account": "zulu"}))
    assert '<datalist id="sub-account-options">' in offered
    assert "Zulu active" in offered
    assert "Zulu merged" not in offered and "Zulu Rival" not in offered

    logged = _names(client.get("/audit/sub-account-options/", {"sub_account_name": "zulu"}))
    assert '<datalist id="audit-sub-account-options">' in logged
    for status in ("active", "merged", "pending_deletion"):
        assert f"Zulu {status}" in logged
    assert "Zulu deleted" not in logged and "Zulu Rival" not in logged

    chosen = _names(client.get("/sub-accounts/options/", {"sub_account": "zulu", "list": "other"}))
    assert '<datalist id="sub-account-options">' in chosen  # an unknown list: the first


def test_staff_suggestions_are_the_slug_s_partner_s_and_staff_only(world):
    partner, _subs, _digits = world
    url = f"/staff/partners/{partner.slug}/billing/sub-account-options/"
    make_user(partner, "admin@picker.example", "admin", password=PASSWORD)
    refused = _client("admin@picker.example").get(url, {"sub_account": "zulu"})
    assert refused.status_code == 404
    staff = Client()
    staff.force_login(staff_create(principal=SYSTEM, email="ops@provider.example"))
    offered = _names(staff.get(url, {"sub_account": "zulu", "list": "credit-sub-account-options"}))
    assert '<datalist id="credit-sub-account-options">' in offered
    assert "Zulu active" in offered
    assert "Zulu merged" not in offered and "Zulu Rival" not in offered
