"""domain §2 lines: numbers, assignment, moves, disconnection and their history."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from portal.audit.models import AuditEvent
from portal.core import clock
from portal.lines.models import AssignmentPeriod, InventoryNumber, Line
from portal.lines.services import inventory_import, line_order_create
from portal.partners.models import SubAccount
from tests.conftest import Api
from tests.factories import (
    SYSTEM,
    assert_line_invariants,
    db_snapshot,
    fresh_numbers,
    import_numbers,
    make_lines,
    make_sub_account,
    make_tenant,
)


def pool_of(partner) -> SubAccount:
    return SubAccount.objects.get(partner=partner, kind="available")


def counts(partner) -> dict[str, int]:
    return {sa.name: sa.line_count for sa in SubAccount.objects.filter(partner=partner)}


# --- Numbers ---------------------------------------------------------------------------


def test_import_normalises_e164_and_rejects_national_numbers(db):
    report = inventory_import(
        principal=SYSTEM,
        csv_text="number\n+1 415 555 0100\n(415) 555-0101\n+44 20 7946 0958\n14155550102\n",
    )
    assert report.added == 3
    stored = set(InventoryNumber.objects.values_list("number", flat=True))
    assert stored == {"+14155550100", "+442079460958", "+14155550102"}
    assert [r["row"] for r in report.rejected] == [3]
    assert "(415) 555-0101" in report.rejected[0]["number"]
    assert InventoryNumber.objects.get(number="+14155550100").area_code == "415"


@pytest.mark.parametrize("bad", ["", "abc", "+1 415", "+999 1234567", "+1 415 555 0100 99999999"])
def test_import_rejects_invalid_numbers_and_keeps_good_rows(db, bad):
    good = fresh_numbers(1)[0]
    report = inventory_import(principal=SYSTEM, csv_text=f'number\n"{bad}"\n{good}\n')
    assert report.added == 1
    assert len(report.rejected) == 1
    assert report.rejected[0]["row"] == 2
    assert list(InventoryNumber.objects.values_list("number", flat=True)) == [good]


def test_import_rejects_numbers_already_in_stock_active_or_repeated(tenant):
    line = make_lines(tenant.partner, 1)[0]
    stocked = fresh_numbers(1)[0]
    import_numbers(stocked)
    report = import_numbers(line.number, stocked, "+1 (212) 555 0100", "+12125550100")
    reasons = {r["row"]: r["reason"] for r in report.rejected}
    assert reasons == {
        2: "Already an active line.",
        3: "Already in stock.",
        5: "Repeated earlier in the file.",
    }
    assert report.added == 1


def test_database_refuses_two_active_lines_with_one_number(tenant, other_tenant):
    line = make_lines(tenant.partner, 1)[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        Line.objects.create(
            partner=other_tenant.partner,
            number=line.number,
            sub_account=pool_of(other_tenant.partner),
            daily_limit=5,
            activated_at=clock.now(),
        )


def test_disconnected_number_can_return_as_a_new_active_line(api, tenant, other_tenant):
    old = make_lines(tenant.partner, 1)[0]
    assert api.post(f"/lines/{old.pk}/disconnect").status_code == 200
    report = import_numbers(old.number)
    assert report.added == 1
    order = line_order_create(principal=SYSTEM.acting_for(other_tenant.partner.pk), quantity=1)
    reborn = Line.objects.get(order=order)
    assert reborn.number == old.number
    assert reborn.pk != old.pk
    assert reborn.status == "active"
    assert reborn.partner_id == other_tenant.partner.pk
    old.refresh_from_db()
    assert old.status == "disconnected"
    assert AssignmentPeriod.objects.filter(line=old).count() == 1
    assert_line_invariants()


# --- Assign ----------------------------------------------------------------------------


def test_assign_takes_a_line_from_available_with_details(db):
    tenant = make_tenant("Limits Inc", default_daily_limit=77)
    api = Api(tenant.keys["manager"])
    sa = make_sub_account(tenant.partner, "Client – Sales")
    line = make_lines(tenant.partner, 1)[0]
    response = api.post(
        f"/lines/{line.pk}/assign",
        {
            "sub_account_id": sa.pk,
            "label": "  Front desk ",
            "user_name": "Ann",
            "user_email": "ANN@example.com",
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["sub_account_id"] == sa.pk
    assert body["label"] == "Front desk"
    assert body["user_email"] == "ann@example.com"
    assert body["daily_limit"] == 77  # the partner's default
    assert counts(tenant.partner) == {"Available": 0, "Client – Sales": 1}
    assert_line_invariants([tenant.partner.pk])


def test_assign_with_an_explicit_daily_limit(api, tenant):
    sa = make_sub_account(tenant.partner)
    line = make_lines(tenant.partner, 1)[0]
    response = api.post(
        f"/lines/{line.pk}/assign", {"sub_account_id": sa.pk, "label": "x", "daily_limit": 12}
    )
    assert response.status_code == 200
    assert response.json()["daily_limit"] == 12


def test_assign_only_from_available(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    line = make_lines(tenant.partner, 1)[0]
    api.ok_post(f"/lines/{line.pk}/assign", {"sub_account_id": a.pk, "label": "x"})
    before = db_snapshot()
    response = api.post(f"/lines/{line.pk}/assign", {"sub_account_id": b.pk, "label": "y"})
    assert response.status_code == 409
    assert "not in Available" in response.json()["detail"]
    assert db_snapshot() == before


def test_a_stale_assign_says_where_the_line_went_and_when(api, tenant):
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    line = make_lines(tenant.partner, 1)[0]
    with clock.frozen_at(LATER):
        api.ok_post(f"/lines/{line.pk}/assign", {"sub_account_id": a.pk, "label": "x"})
    before = db_snapshot()
    response = api.post(f"/lines/{line.pk}/assign", {"sub_account_id": b.pk, "label": "y"})
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Line {line.number} is not in Available any more: it was moved to “Client A – Sales” "
        "at 5 Jul 2030, 14:03 UTC. Reload and try again (Move changes the sub-account of a "
        "line in use)."
    )
    assert db_snapshot() == before


def test_assign_into_available_is_refused(api, tenant):
    line = make_lines(tenant.partner, 1)[0]
    before = db_snapshot()
    response = api.post(
        f"/lines/{line.pk}/assign",
        {"sub_account_id": pool_of(tenant.partner).pk, "label": "x"},
    )
    assert response.status_code == 409
    assert db_snapshot() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"label": ""}, "Label"),
        ({"label": "   "}, "Label"),
        ({"label": "x", "user_email": "not-an-email"}, "User email"),
        ({"label": "x", "daily_limit": 0}, "Daily limit"),
        ({"label": "x", "daily_limit": 100_001}, "Daily limit"),
        ({"label": "x" * 121}, "Label"),
    ],
)
def test_assign_validates_details(api, tenant, body, field):
    sa = make_sub_account(tenant.partner)
    line = make_lines(tenant.partner, 1)[0]
    before = db_snapshot()
    response = api.post(f"/lines/{line.pk}/assign", {"sub_account_id": sa.pk, **body})
    assert response.status_code == 422
    assert field in response.json()["detail"]
    assert db_snapshot() == before


# --- Move ------------------------------------------------------------------------------


def test_move_one_line_and_back_to_available(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    line = make_lines(tenant.partner, 2)[0]
    pool = pool_of(tenant.partner)
    for target, expected in [
        (a, {"Available": 1, "A": 1, "B": 0}),
        (b, {"Available": 1, "A": 0, "B": 1}),
        (pool, {"Available": 2, "A": 0, "B": 0}),
    ]:
        response = api.post(f"/lines/{line.pk}/move", {"sub_account_id": target.pk})
        assert response.status_code == 200, response.content
        assert response.json()["sub_account_id"] == target.pk
        assert counts(tenant.partner) == expected
        assert_line_invariants([tenant.partner.pk])
    periods = AssignmentPeriod.objects.filter(line=line).order_by("start", "pk")
    assert [p.sub_account_id for p in periods] == [pool.pk, a.pk, b.pk, pool.pk]


def test_move_into_the_same_sub_account_is_a_conflict(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    line = make_lines(tenant.partner, 1)[0]
    api.ok_post(f"/lines/{line.pk}/move", {"sub_account_id": a.pk})
    before = db_snapshot()
    response = api.post(f"/lines/{line.pk}/move", {"sub_account_id": a.pk})
    assert response.status_code == 409
    assert "already in that sub-account" in response.json()["detail"]
    assert db_snapshot() == before


def test_move_to_an_unknown_sub_account_is_404(api, tenant):
    line = make_lines(tenant.partner, 1)[0]
    before = db_snapshot()
    response = api.post(f"/lines/{line.pk}/move", {"sub_account_id": 987654321})
    assert response.status_code == 404
    assert response.json() == {"detail": "Sub-account 987654321 not found."}
    assert db_snapshot() == before


def test_bulk_move_moves_all_and_counts_those_already_there(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    lines = make_lines(tenant.partner, 5)
    api.ok_post(f"/lines/{lines[0].pk}/move", {"sub_account_id": a.pk})
    api.ok_post(f"/lines/{lines[1].pk}/move", {"sub_account_id": b.pk})
    response = api.post(
        "/lines/move", {"line_ids": [ln.pk for ln in lines[:4]], "sub_account_id": b.pk}
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"moved": 3, "already_there": 1}
    assert counts(tenant.partner) == {"Available": 1, "A": 0, "B": 4}
    assert_line_invariants([tenant.partner.pk])


def test_bulk_move_with_one_unknown_id_moves_nothing(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    lines = make_lines(tenant.partner, 3)
    before = db_snapshot()
    response = api.post(
        "/lines/move",
        {"line_ids": [lines[0].pk, 987654321, lines[1].pk], "sub_account_id": a.pk},
    )
    assert response.status_code == 404
    assert "987654321" in response.json()["detail"]
    assert db_snapshot() == before


def test_bulk_move_with_a_disconnected_line_moves_nothing(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    lines = make_lines(tenant.partner, 3)
    api.ok_post(f"/lines/{lines[1].pk}/disconnect")
    before = db_snapshot()
    response = api.post(
        "/lines/move", {"line_ids": [ln.pk for ln in lines], "sub_account_id": a.pk}
    )
    assert response.status_code == 409
    assert lines[1].number in response.json()["detail"]
    assert db_snapshot() == before


def test_bulk_move_with_repeated_ids_moves_each_line_once(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    lines = make_lines(tenant.partner, 2)
    ids = [lines[0].pk, lines[1].pk, lines[0].pk]
    response = api.post("/lines/move", {"line_ids": ids, "sub_account_id": a.pk})
    assert response.status_code == 200
    assert response.json()["moved"] == 2
    assert AuditEvent.objects.filter(action="line.move").count() == 2
    assert_line_invariants([tenant.partner.pk])


# --- Moves from a stale view (domain §6, §7: from_sub_account_id) -------------------------

# After every line the tests make, so a move made "then" is dated then (a change is never
# dated before the period it closes).
LATER = dt.datetime(2030, 7, 5, 14, 3, 27, tzinfo=dt.UTC)


def test_move_from_where_the_line_is_moves_it(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    line = make_lines(tenant.partner, 1)[0]
    pool = pool_of(tenant.partner)
    response = api.post(
        f"/lines/{line.pk}/move", {"sub_account_id": a.pk, "from_sub_account_id": pool.pk}
    )
    assert response.status_code == 200, response.content
    assert response.json()["sub_account_id"] == a.pk
    assert_line_invariants([tenant.partner.pk])


def test_move_from_a_stale_view_is_refused_saying_where_and_when(api, tenant):
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    line = make_lines(tenant.partner, 1)[0]
    pool = pool_of(tenant.partner)
    with clock.frozen_at(LATER):
        api.ok_post(f"/lines/{line.pk}/move", {"sub_account_id": b.pk})
    before = db_snapshot()
    # Two callers saw the line in Available; the first one's move above won.
    response = api.post(
        f"/lines/{line.pk}/move", {"sub_account_id": a.pk, "from_sub_account_id": pool.pk}
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Line {line.number} is no longer in “Available”: it was moved to "
        "“Client B – Support” at 5 Jul 2030, 14:03 UTC. Reload and try again."
    )
    assert db_snapshot() == before
    # Even a move to where it already is: the caller's view is what is stale.
    response = api.post(
        f"/lines/{line.pk}/move", {"sub_account_id": b.pk, "from_sub_account_id": pool.pk}
    )
    assert response.status_code == 409
    assert "no longer in “Available”" in response.json()["detail"]
    assert db_snapshot() == before


def test_move_of_a_disconnected_line_from_a_stale_view_says_when(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    line = make_lines(tenant.partner, 1)[0]
    pool = pool_of(tenant.partner)
    with clock.frozen_at(LATER):
        api.ok_post(f"/lines/{line.pk}/disconnect")
    response = api.post(
        f"/lines/{line.pk}/move", {"sub_account_id": a.pk, "from_sub_account_id": pool.pk}
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Line {line.number} is no longer in “Available”: it was disconnected at "
        "5 Jul 2030, 14:03 UTC. Reload and try again."
    )


def test_a_from_sub_account_the_caller_cannot_see_is_404_like_a_missing_one(
    api, tenant, other_tenant
):
    """The tenant wall: another partner's sub-account is not "somewhere else", it is
    nowhere, so the answer is the one a missing id gets (not a 409 naming anything)."""
    a = make_sub_account(tenant.partner, "A")
    theirs = make_sub_account(other_tenant.partner, "Theirs")
    line = make_lines(tenant.partner, 2)[0]
    before = db_snapshot()
    for seen in (theirs.pk, 987654321):
        single = api.post(
            f"/lines/{line.pk}/move", {"sub_account_id": a.pk, "from_sub_account_id": seen}
        )
        bulk = api.post(
            "/lines/move",
            {"line_ids": [line.pk], "sub_account_id": a.pk, "from_sub_account_id": seen},
        )
        for response in (single, bulk):
            assert response.status_code == 404, response.content
            assert response.json() == {"detail": f"Sub-account {seen} not found."}
    assert db_snapshot() == before


@pytest.mark.parametrize("seen", ["1", 1.0, True, [1], {"id": 1}])
def test_from_sub_account_id_is_a_strict_integer(api, tenant, seen):
    a = make_sub_account(tenant.partner, "A")
    line = make_lines(tenant.partner, 1)[0]
    before = db_snapshot()
    for path, body in [
        (f"/lines/{line.pk}/move", {"sub_account_id": a.pk, "from_sub_account_id": seen}),
        (
            "/lines/move",
            {"line_ids": [line.pk], "sub_account_id": a.pk, "from_sub_account_id": seen},
        ),
    ]:
        response = api.post(path, body)
        assert response.status_code == 422, (path, response.content)
        assert "from_sub_account_id" in str(response.json()["detail"])
    assert db_snapshot() == before


@pytest.mark.parametrize("seen", [0, -3, 2**63, 2**70])
def test_from_sub_account_id_that_cannot_be_an_id_is_not_found(api, tenant, seen):
    a = make_sub_account(tenant.partner, "A")
    line = make_lines(tenant.partner, 1)[0]
    before = db_snapshot()
    response = api.post(
        f"/lines/{line.pk}/move", {"sub_account_id": a.pk, "from_sub_account_id": seen}
    )
    assert response.status_code == 404, response.content
    assert db_snapshot() == before


def test_bulk_move_from_where_every_line_is(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    lines = make_lines(tenant.partner, 3)
    response = api.post(
        "/lines/move",
        {
            "line_ids": [ln.pk for ln in lines],
            "sub_account_id": a.pk,
            "from_sub_account_id": pool_of(tenant.partner).pk,
        },
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"moved": 3, "already_there": 0}
    assert_line_invariants([tenant.partner.pk])


def test_bulk_move_with_one_line_moved_meanwhile_moves_none(api, tenant):
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    lines = make_lines(tenant.partner, 4)
    pool = pool_of(tenant.partner)
    with clock.frozen_at(LATER):
        api.ok_post(f"/lines/{lines[2].pk}/move", {"sub_account_id": b.pk})
    before = db_snapshot()
    response = api.post(
        "/lines/move",
        {
            "line_ids": [ln.pk for ln in lines],
            "sub_account_id": a.pk,
            "from_sub_account_id": pool.pk,
        },
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "1 of the 4 lines moved since you saw them, so none was moved. "
        f"Line {lines[2].number} is no longer in “Available”: it was moved to "
        "“Client B – Support” at 5 Jul 2030, 14:03 UTC. Reload and try again."
    )
    assert db_snapshot() == before
    # A line already in the target is not in the sub-account named either.
    response = api.post(
        "/lines/move",
        {
            "line_ids": [ln.pk for ln in lines],
            "sub_account_id": b.pk,
            "from_sub_account_id": pool.pk,
        },
    )
    assert response.status_code == 409
    assert db_snapshot() == before


def test_bulk_move_refusal_names_a_few_stale_lines_and_counts_the_rest(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    lines = make_lines(tenant.partner, 9)
    api.ok_post("/lines/move", {"line_ids": [ln.pk for ln in lines[:7]], "sub_account_id": b.pk})
    response = api.post(
        "/lines/move",
        {
            "line_ids": [ln.pk for ln in lines],
            "sub_account_id": a.pk,
            "from_sub_account_id": pool_of(tenant.partner).pk,
        },
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail.startswith("7 of the 9 lines moved since you saw them, so none was moved.")
    assert detail.count("is no longer in “Available”: it was moved to “B”") == 5
    assert detail.endswith("; and 2 more. Reload and try again.")


# --- Disconnect ------------------------------------------------------------------------


def test_disconnect_is_final_and_keeps_history(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    line = make_lines(tenant.partner, 1)[0]
    api.ok_post(f"/lines/{line.pk}/assign", {"sub_account_id": a.pk, "label": "x"})
    response = api.post(f"/lines/{line.pk}/disconnect")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "disconnected"
    assert body["sub_account_id"] is None
    assert body["disconnected_at"] is not None
    assert counts(tenant.partner) == {"Available": 0, "A": 0}
    assert_line_invariants([tenant.partner.pk])

    before = db_snapshot()
    pool = pool_of(tenant.partner)
    for path, payload in [
        (f"/lines/{line.pk}/move", {"sub_account_id": a.pk}),
        (f"/lines/{line.pk}/move", {"sub_account_id": pool.pk}),
        (f"/lines/{line.pk}/assign", {"sub_account_id": a.pk, "label": "again"}),
        (f"/lines/{line.pk}/disconnect", None),
        ("/lines/move", {"line_ids": [line.pk], "sub_account_id": a.pk}),
    ]:
        refused = api.post(path, payload)
        assert refused.status_code == 409, (path, refused.content)
        assert "disconnected" in refused.json()["detail"].lower()
    assert db_snapshot() == before

    assert api.get(f"/lines/{line.pk}").json()["status"] == "disconnected"
    periods = list(AssignmentPeriod.objects.filter(line=line).order_by("start"))
    assert [p.sub_account_id for p in periods] == [pool.pk, a.pk]
    history = api.get("/audit-events", line_id=line.pk).json()
    assert [e["action"] for e in history["items"]] == [
        "line.disconnect",
        "line.assign",
        "line.activate",
    ]


# --- Reads -----------------------------------------------------------------------------


def test_line_list_filters(api, tenant):
    a = make_sub_account(tenant.partner, "A")
    lines = make_lines(tenant.partner, 3, area_code="212")
    api.ok_post(
        f"/lines/{lines[0].pk}/assign",
        {"sub_account_id": a.pk, "label": "Reception", "user_name": "Zoë"},
    )
    api.ok_post(f"/lines/{lines[1].pk}/disconnect")
    in_a = api.get("/lines", sub_account_id=a.pk).json()
    assert [i["id"] for i in in_a["items"]] == [lines[0].pk]
    disconnected = api.get("/lines", status="disconnected").json()
    assert [i["id"] for i in disconnected["items"]] == [lines[1].pk]
    assert [i["id"] for i in api.get("/lines", search="recep").json()["items"]] == [lines[0].pk]
    by_digits = api.get("/lines", search=lines[2].number[-7:]).json()["items"]
    assert [i["id"] for i in by_digits] == [lines[2].pk]
    assert api.get("/lines", status="gone").status_code == 400
    assert api.get("/lines").json()["count"] == 3


def test_search_by_label_does_not_match_every_number_with_that_digit(api, tenant):
    from portal.lines.services import line_assign
    from tests.factories import SYSTEM, make_lines, make_sub_account

    target = make_sub_account(tenant.partner, "Client A – Sales")
    lines = make_lines(tenant.partner, 3)
    for i, line in enumerate(lines):
        line_assign(
            principal=SYSTEM, line_id=line.pk, sub_account_id=target.pk, label=f"Rep {i + 5}"
        )
    by_label = api.get("/lines", search="Rep 6").json()
    assert [item["label"] for item in by_label["items"]] == ["Rep 6"]
    digits = lines[1].number[-4:]
    by_number = api.get("/lines", search=f"555 {digits[:2]}-{digits[2:]}").json()
    assert lines[1].number in [item["number"] for item in by_number["items"]]


def test_fulfilling_another_partners_waiting_order_names_no_one_of_this_partner(
    tenant, other_tenant
):
    """Orders are fulfilled oldest first, whoever's action runs the pass: another
    partner's order fulfilled during this partner's request is the platform's doing in
    that partner's audit log, never this partner's key."""
    waiting = line_order_create(principal=other_tenant.principal("admin"), quantity=1)
    assert waiting.status == "pending"
    # Stock that arrived without a fulfilment pass of its own (as after a crash).
    for number in fresh_numbers(2):
        InventoryNumber.objects.create(
            number=number, area_code="415", status="in_stock", imported_at=clock.now()
        )
    mine = line_order_create(principal=tenant.principal("admin"), quantity=1)
    waiting.refresh_from_db()
    assert (waiting.status, mine.status) == ("fulfilled", "fulfilled")
    fulfil = AuditEvent.objects.get(action="line_order.fulfil", object_id=str(waiting.pk))
    assert fulfil.partner_id == other_tenant.partner.pk
    assert fulfil.actor_label == "task:order-fulfilment"
    assert not AuditEvent.objects.filter(
        partner_id=other_tenant.partner.pk, actor_label=tenant.principal("admin").label
    ).exists()
    own = AuditEvent.objects.get(action="line_order.fulfil", object_id=str(mine.pk))
    assert own.actor_label == tenant.principal("admin").label
