"""domain §2 sub-accounts and the Available pool, through the REST API."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from portal.audit.models import AuditEvent
from portal.partners.models import SubAccount
from tests.factories import (
    assert_line_invariants,
    db_snapshot,
    force_state,
    make_lines,
    make_partner,
    make_sub_account,
)


def _create(api, name: str, **extra):
    return api.post("/sub-accounts", {"name": name, **extra})


# --- Names ---------------------------------------------------------------------------


def test_name_is_trimmed(api, tenant):
    response = _create(api, "   Client ABC – Sales Campaign \t ")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "Client ABC – Sales Campaign"
    assert SubAccount.objects.get(pk=response.json()["id"]).name == "Client ABC – Sales Campaign"


@pytest.mark.parametrize("length", [1, 120])
def test_name_length_bounds_are_accepted(api, tenant, length):
    response = _create(api, "x" * length)
    assert response.status_code == 201, response.content
    assert len(response.json()["name"]) == length


@pytest.mark.parametrize("name", ["", "   ", "y" * 121, " " + "y" * 121 + " "])
def test_name_outside_bounds_is_refused(api, tenant, name):
    before = db_snapshot()
    response = _create(api, name)
    assert response.status_code == 422
    assert "Sub-account name" in response.json()["detail"]
    assert db_snapshot() == before


def test_name_of_120_chars_after_trimming_is_accepted(api, tenant):
    response = _create(api, "  " + "z" * 120 + "  ")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Client ABC", "client abc"),
        ("Client ABC", "  CLIENT ABC  "),
        ("ÉCOLE Lumière", "école lumière"),
    ],
)
def test_name_is_unique_within_partner_ignoring_case(api, tenant, first, second):
    assert _create(api, first).status_code == 201
    before = db_snapshot()
    response = _create(api, second)
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]
    assert db_snapshot() == before


def test_database_refuses_a_case_variant_name_even_without_the_service(tenant):
    make_sub_account(tenant.partner, "Straße Één")
    with pytest.raises(IntegrityError), transaction.atomic():
        SubAccount.objects.create(partner=tenant.partner, name="STRAßE ÉÉN")


def test_same_name_in_another_partner_is_allowed(api, tenant, other_tenant, api_as):
    assert _create(api, "Client ABC – Sales").status_code == 201
    response = _create(api_as(other_tenant.keys["admin"]), "client abc – sales")
    assert response.status_code == 201, response.content
    assert SubAccount.objects.filter(name__iexact="client abc – sales").count() == 2


def test_name_of_a_purged_sub_account_can_be_reused(api, tenant):
    old = make_sub_account(tenant.partner, "Old Client")
    force_state(old, status="deleted")
    response = _create(api, "old client")
    assert response.status_code == 201, response.content


def test_available_is_a_reserved_name(api, tenant):
    before = db_snapshot()
    response = _create(api, "available")
    assert response.status_code == 409
    assert db_snapshot() == before


def test_rename_to_a_case_variant_of_its_own_name_is_allowed(api, tenant):
    sa = make_sub_account(tenant.partner, "Client abc")
    response = api.patch(f"/sub-accounts/{sa.pk}", {"name": "Client ABC"})
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Client ABC"


def test_rename_onto_another_name_ignoring_case_is_refused(api, tenant):
    make_sub_account(tenant.partner, "Client One")
    two = make_sub_account(tenant.partner, "Client Two")
    before = db_snapshot()
    response = api.patch(f"/sub-accounts/{two.pk}", {"name": "CLIENT ONE"})
    assert response.status_code == 409
    assert db_snapshot() == before


@pytest.mark.parametrize("name", ["Acme", "acme sales", "Client ABC - Sales", "Q3 campaign 🚀"])
def test_names_off_the_recommended_pattern_are_not_errors(api, tenant, name):
    response = _create(api, name)
    assert response.status_code == 201, response.content
    assert response.json()["name"] == name


def test_contact_details_are_cleaned(api, tenant):
    response = _create(
        api,
        "Client C",
        contact_name="  Ann Lee ",
        contact_email=" Ann.Lee@Example.COM ",
        contact_phone="+1 (415) 555-0199",
        internal_reference=" REF-7 ",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["contact_name"] == "Ann Lee"
    assert body["contact_email"] == "ann.lee@example.com"
    assert body["contact_phone"] == "+14155550199"
    assert body["internal_reference"] == "REF-7"


def test_patch_without_a_change_records_nothing(api, tenant):
    sa = make_sub_account(tenant.partner, "Same", contact_name="Bo")
    before = db_snapshot()
    response = api.patch(f"/sub-accounts/{sa.pk}", {"name": " Same ", "contact_name": "Bo"})
    assert response.status_code == 200
    assert db_snapshot() == before


def test_patch_null_clears_details_but_not_the_name(api, tenant):
    sa = make_sub_account(tenant.partner, "Clear Me", contact_name="Bo")
    response = api.patch(f"/sub-accounts/{sa.pk}", {"contact_name": None})
    assert response.status_code == 200
    assert response.json()["contact_name"] == ""
    before = db_snapshot()
    assert api.patch(f"/sub-accounts/{sa.pk}", {"name": None}).status_code == 422
    assert db_snapshot() == before


# --- Listing -------------------------------------------------------------------------


def test_available_pool_is_listed_first_even_before_earlier_names(api, tenant):
    for name in ["zeta", "Aardvark", "AAA", "available pool backup", "123 numbers"]:
        make_sub_account(tenant.partner, name)
    items = api.get("/sub-accounts").json()["items"]
    assert items[0]["kind"] == "available"
    assert items[0]["name"] == "Available"
    rest = [item["name"] for item in items[1:]]
    assert rest == sorted(rest, key=str.lower)
    assert len(items) == 6


def test_search_and_status_filters(api, tenant):
    make_sub_account(tenant.partner, "North – Sales")
    south = make_sub_account(tenant.partner, "South – Sales")
    make_sub_account(tenant.partner, "North – Support")
    force_state(south, status="pending_deletion")
    names = [i["name"] for i in api.get("/sub-accounts", search="sales").json()["items"]]
    assert names == ["North – Sales"]  # pending deletion is hidden by default
    hidden = api.get("/sub-accounts", status="pending_deletion").json()
    assert [i["name"] for i in hidden["items"]] == ["South – Sales"]
    assert hidden["count"] == 1
    bad = api.get("/sub-accounts", status="nonsense")
    assert bad.status_code == 400
    assert "nonsense" in bad.json()["detail"]


def test_list_pagination(api, tenant):
    for i in range(5):
        make_sub_account(tenant.partner, f"Client {i}")
    page = api.get("/sub-accounts", limit=2, offset=1).json()
    assert page["count"] == 6
    assert [i["name"] for i in page["items"]] == ["Client 0", "Client 1"]


# --- The Available pool ----------------------------------------------------------------


def test_every_partner_has_exactly_one_available_pool(db):
    partner = make_partner()
    pools = SubAccount.objects.filter(partner=partner, kind="available")
    assert pools.count() == 1
    assert pools.get().status == "active"
    with pytest.raises(IntegrityError), transaction.atomic():
        SubAccount.objects.create(partner=partner, name="Second pool", kind="available")


def test_available_pool_cannot_be_renamed(api, tenant):
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")
    before = db_snapshot()
    response = api.patch(f"/sub-accounts/{pool.pk}", {"name": "Spare lines"})
    assert response.status_code == 409
    assert "Available" in response.json()["detail"]
    assert db_snapshot() == before


def test_available_pool_keeps_its_name_in_any_case_variant(api, tenant):
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")
    response = api.patch(f"/sub-accounts/{pool.pk}", {"name": "AVAILABLE"})
    assert response.status_code == 409
    assert SubAccount.objects.get(pk=pool.pk).name == "Available"


# --- Read-only states and locks ---------------------------------------------------------


@pytest.mark.parametrize("status", ["merged", "pending_deletion"])
def test_read_only_sub_accounts_refuse_changes(api, tenant, status):
    sa = make_sub_account(tenant.partner, "Frozen")
    target = make_sub_account(tenant.partner, "Target")
    force_state(sa, status=status, merged_into=target if status == "merged" else None)
    lines = make_lines(tenant.partner, 2)
    before = db_snapshot()
    patch = api.patch(f"/sub-accounts/{sa.pk}", {"contact_name": "Someone"})
    assert patch.status_code == 409
    assert "cannot be changed" in patch.json()["detail"]
    move = api.post(f"/lines/{lines[0].pk}/move", {"sub_account_id": sa.pk})
    assert move.status_code == 409
    assign = api.post(f"/lines/{lines[0].pk}/assign", {"sub_account_id": sa.pk, "label": "x"})
    assert assign.status_code == 409
    bulk = api.post("/lines/move", {"line_ids": [ln.pk for ln in lines], "sub_account_id": sa.pk})
    assert bulk.status_code == 409
    assert db_snapshot() == before
    shown = api.get(f"/sub-accounts/{sa.pk}")
    assert shown.status_code == 200
    assert shown.json()["status"] == status
    if status == "merged":
        assert shown.json()["merged_into_id"] == target.pk


def test_lock_reason_blocks_moves_out_and_in(api, tenant):
    source = make_sub_account(tenant.partner, "Source")
    target = make_sub_account(tenant.partner, "Target")
    lines = make_lines(tenant.partner, 3)
    for line in lines[:2]:
        assert api.post(f"/lines/{line.pk}/move", {"sub_account_id": source.pk}).status_code == 200
    force_state(source, lock_reason="pending merge request #7")
    before = db_snapshot()

    out = api.post(f"/lines/{lines[0].pk}/move", {"sub_account_id": target.pk})
    assert out.status_code == 409
    assert "pending merge request #7" in out.json()["detail"]
    into = api.post(f"/lines/{lines[2].pk}/move", {"sub_account_id": source.pk})
    assert into.status_code == 409
    assert "pending merge request #7" in into.json()["detail"]
    assign = api.post(f"/lines/{lines[2].pk}/assign", {"sub_account_id": source.pk, "label": "a"})
    assert assign.status_code == 409
    assert "pending merge request #7" in assign.json()["detail"]
    bulk = api.post(
        "/lines/move", {"line_ids": [lines[0].pk, lines[2].pk], "sub_account_id": target.pk}
    )
    assert bulk.status_code == 409
    assert "pending merge request #7" in bulk.json()["detail"]
    back = api.post(f"/lines/{lines[1].pk}/move", {"sub_account_id": lines[2].sub_account_id})
    assert back.status_code == 409
    disconnect = api.post(f"/lines/{lines[0].pk}/disconnect")
    assert disconnect.status_code == 409
    assert "pending merge request #7" in disconnect.json()["detail"]
    assert db_snapshot() == before

    force_state(source, lock_reason="")
    assert api.post(f"/lines/{lines[0].pk}/move", {"sub_account_id": target.pk}).status_code == 200
    assert_line_invariants([tenant.partner.pk])


def test_lock_on_the_target_of_a_move_blocks_it(api, tenant):
    target = make_sub_account(tenant.partner, "Being deleted")
    force_state(target, lock_reason="pending deletion request #3")
    line = make_lines(tenant.partner, 1)[0]
    events = AuditEvent.objects.count()
    response = api.post(f"/lines/{line.pk}/move", {"sub_account_id": target.pk})
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Sub-account 'Being deleted' is locked: pending deletion request #3."
    }
    assert AuditEvent.objects.count() == events
