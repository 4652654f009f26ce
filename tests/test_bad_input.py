"""Bad input gets a clear ``{"detail": ...}``, never a 500, and changes nothing (domain §7).

Every case runs against the same small world and compares a snapshot of the
domain tables (sub-accounts, lines, periods, orders, inventory, audit events)
before and after the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from portal.lines.services import line_assign, line_disconnect
from tests.conftest import Api
from tests.factories import (
    SYSTEM,
    db_snapshot,
    force_state,
    make_lines,
    make_sub_account,
    make_tenant,
)

HUGE = 2**70


@dataclass(frozen=True)
class Ids:
    existing: int  # a standard active sub-account named "Existing – Sales"
    merged: int
    pending_deletion: int
    pool: int
    line: int  # active, in Available
    assigned_line: int  # active, in Existing
    disconnected_line: int
    order: int


@pytest.fixture
def world(db) -> tuple[Api, Ids]:
    tenant = make_tenant("Careful Partner")
    partner = tenant.partner
    existing = make_sub_account(partner, "Existing – Sales")
    merged = force_state(make_sub_account(partner, "Merged Away"), status="merged")
    force_state(merged, merged_into=existing)
    pending = force_state(make_sub_account(partner, "Going Away"), status="pending_deletion")
    lines = make_lines(partner, 3)
    line_assign(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=existing.pk, label="Desk")
    line_disconnect(principal=SYSTEM, line_id=lines[2].pk)
    client = Api(tenant.keys["admin"])
    order = client.ok_post("/line-orders", {"quantity": 2})
    ids = Ids(
        existing=existing.pk,
        merged=merged.pk,
        pending_deletion=pending.pk,
        pool=lines[0].sub_account_id,
        line=lines[0].pk,
        assigned_line=lines[1].pk,
        disconnected_line=lines[2].pk,
        order=order["id"],
    )
    return client, ids


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # formatted with the Ids fields and HUGE
    body: Any = None  # a JSON value, or a callable(Ids) -> JSON value
    raw: str | None = None  # sent as is instead of ``body``
    status: int = 422
    says: str = ""  # a phrase the detail must contain (case-insensitive)


def name_case(label: str, name: Any, status: int = 422, says: str = "") -> Case:
    return Case(f"name {label}", "POST", "/sub-accounts", {"name": name}, status=status, says=says)


def move_case(label: str, target: Any, status: int, says: str = "", line: str = "line") -> Case:
    return Case(
        f"move {label}",
        "POST",
        f"/lines/{{{line}}}/move",
        lambda ids: {"sub_account_id": target(ids) if callable(target) else target},
        status=status,
        says=says,
    )


CASES: list[Case] = [
    # --- Names
    name_case("empty", "", says="required"),
    name_case("whitespace only", " \t  ", says="required"),
    name_case("121 chars", "n" * 121, says="121 characters"),
    name_case("duplicate ignoring case", "EXISTING – SALES", 409, "already exists"),
    name_case("duplicate with spaces", "  existing – sales ", 409, "already exists"),
    name_case("NUL", "Bad\x00name", says="control character"),
    name_case("tab", "Tab\tname", says="control character"),
    name_case("newline", "Two\nlines", says="control character"),
    name_case("escape sequence", "\x1b[31mRed", says="control character"),
    name_case("DEL", "Del\x7f", says="control character"),
    name_case("right-to-left override", "invoice\u202egnp.exe", says="control character"),
    name_case("left-to-right isolate", "a\u2066b", says="control character"),
    name_case("zero-width space", "Zero\u200bwidth", says="control character"),
    name_case("number", 123),
    name_case("null", None),
    name_case("list", ["A"]),
    Case("name missing", "POST", "/sub-accounts", {"contact_name": "Bo"}),
    Case("rename empty", "PATCH", "/sub-accounts/{existing}", {"name": "  "}, says="required"),
    Case(
        "rename with bidi",
        "PATCH",
        "/sub-accounts/{existing}",
        {"name": "x\u202dy"},
        says="control character",
    ),
    Case(
        "contact name with control",
        "POST",
        "/sub-accounts",
        {"name": "Fine", "contact_name": "Bo\x07"},
        says="control character",
    ),
    # --- Emails
    *[
        Case(
            f"contact email {email!r}",
            "POST",
            "/sub-accounts",
            {"name": "Fine", "contact_email": email},
            says="email",
        )
        for email in ["not-an-email", "a@b", "a@@b.com", "ann @example.com", "x" * 250 + "@a.com"]
    ],
    Case(
        "user email on assign",
        "POST",
        "/lines/{line}/assign",
        lambda ids: {"sub_account_id": ids.existing, "label": "x", "user_email": "nope@"},
        says="email",
    ),
    Case(
        "patch email",
        "PATCH",
        "/sub-accounts/{existing}",
        {"contact_email": "@example.com"},
        says="email",
    ),
    # --- Phone numbers
    *[
        Case(
            f"contact phone {phone!r}",
            "POST",
            "/sub-accounts",
            {"name": "Fine", "contact_phone": phone},
            says="phone",
        )
        for phone in ["(415) 555-0100", "+1 415", "12", "+999 1234567", "call me", "+" + "1" * 40]
    ],
    # --- Unknown and huge ids
    Case("unknown sub-account", "GET", "/sub-accounts/987654321", status=404, says="not found"),
    Case("huge sub-account", "GET", "/sub-accounts/{huge}", status=404, says="not found"),
    Case("zero sub-account", "GET", "/sub-accounts/0", status=404, says="not found"),
    Case("negative sub-account", "GET", "/sub-accounts/-5", status=404, says="not found"),
    Case(
        "patch huge sub-account",
        "PATCH",
        "/sub-accounts/{huge}",
        {"name": "X"},
        status=404,
        says="not found",
    ),
    Case("unknown line", "GET", "/lines/987654321", status=404, says="not found"),
    Case("huge line", "GET", "/lines/{huge}", status=404, says="not found"),
    Case("huge order", "GET", "/line-orders/{huge}", status=404, says="not found"),
    Case("cancel huge order", "POST", "/line-orders/{huge}/cancel", status=404),
    Case("disconnect huge line", "POST", "/lines/{huge}/disconnect", status=404),
    Case(
        "assign huge line",
        "POST",
        "/lines/{huge}/assign",
        lambda ids: {"sub_account_id": ids.existing, "label": "x"},
        status=404,
    ),
    Case(
        "assign into huge sub-account",
        "POST",
        "/lines/{line}/assign",
        {"sub_account_id": HUGE, "label": "x"},
        status=404,
    ),
    move_case("to unknown sub-account", 987654321, 404, "not found"),
    move_case("to huge sub-account", HUGE, 404, "not found"),
    move_case("huge line", lambda ids: ids.existing, 404, line="huge"),
    Case(
        "bulk move huge line",
        "POST",
        "/lines/move",
        lambda ids: {"line_ids": [ids.line, HUGE], "sub_account_id": ids.existing},
        status=404,
    ),
    Case(
        "bulk move to huge target",
        "POST",
        "/lines/move",
        lambda ids: {"line_ids": [ids.line], "sub_account_id": HUGE},
        status=404,
    ),
    # --- Non-integer ids
    Case("non-integer path id", "GET", "/sub-accounts/abc"),
    Case("decimal path id", "GET", "/lines/1.5"),
    Case("exponent path id", "POST", "/lines/1e3/disconnect"),
    move_case("to a string id", "abc", 422),
    move_case("to a numeric string id", lambda ids: str(ids.existing), 422),
    move_case("to a decimal id", 1.5, 422),
    move_case("to true", True, 422),
    move_case("to null", None, 422),
    Case(
        "bulk move ids as a string",
        "POST",
        "/lines/move",
        lambda ids: {"line_ids": f"{ids.line}", "sub_account_id": ids.existing},
    ),
    Case(
        "bulk move no ids",
        "POST",
        "/lines/move",
        lambda ids: {"line_ids": [], "sub_account_id": ids.existing},
    ),
    Case(
        "bulk move boolean id",
        "POST",
        "/lines/move",
        lambda ids: {"line_ids": [True], "sub_account_id": ids.existing},
    ),
    # --- Wrong states
    Case(
        "assign a line not in Available",
        "POST",
        "/lines/{assigned_line}/assign",
        lambda ids: {"sub_account_id": ids.existing, "label": "x"},
        status=409,
        says="not in Available",
    ),
    Case(
        "assign into Available",
        "POST",
        "/lines/{line}/assign",
        lambda ids: {"sub_account_id": ids.pool, "label": "x"},
        status=409,
    ),
    move_case(
        "into the same sub-account",
        lambda ids: ids.existing,
        409,
        "already in",
        line="assigned_line",
    ),
    move_case("to a merged sub-account", lambda ids: ids.merged, 409, "merged"),
    move_case(
        "to a pending-deletion sub-account", lambda ids: ids.pending_deletion, 409, "deletion"
    ),
    move_case("a disconnected line", lambda ids: ids.existing, 409, line="disconnected_line"),
    Case("disconnect twice", "POST", "/lines/{disconnected_line}/disconnect", status=409),
    Case(
        "patch a merged sub-account",
        "PATCH",
        "/sub-accounts/{merged}",
        {"contact_name": "x"},
        status=409,
    ),
    Case("rename the pool", "PATCH", "/sub-accounts/{pool}", {"name": "Spare"}, status=409),
    # --- Malformed bodies
    *[
        Case(f"malformed JSON {raw!r}", "POST", "/sub-accounts", raw=raw, status=400)
        for raw in ["{bad", "{'name': 'x'}", '{"name": "x"', '{"name": "x",}', "name=x"]
    ],
    Case("malformed JSON on move", "POST", "/lines/{line}/move", raw="{", status=400),
    Case("malformed JSON on patch", "PATCH", "/sub-accounts/{existing}", raw="}", status=400),
    *[
        Case(f"JSON {raw} instead of an object", "POST", "/sub-accounts", raw=raw)
        for raw in ["[]", '[{"name": "x"}]', '"name"', "42", "null", "true"]
    ],
    Case("array on bulk move", "POST", "/lines/move", raw="[1, 2]"),
    Case("empty body", "POST", "/line-orders", raw=""),
    # --- Unknown fields
    Case("unknown field", "POST", "/sub-accounts", {"name": "x", "colour": "red"}),
    Case("kind is not writable", "PATCH", "/sub-accounts/{existing}", {"kind": "available"}),
    Case("status is not writable", "PATCH", "/sub-accounts/{existing}", {"status": "deleted"}),
    Case("line_count is not writable", "PATCH", "/sub-accounts/{existing}", {"line_count": 9}),
    Case(
        "move with an extra field",
        "POST",
        "/lines/{line}/move",
        lambda ids: {"sub_account_id": ids.existing, "force": True},
    ),
    Case("order with a price", "POST", "/line-orders", {"quantity": 1, "price": "0"}),
    # --- Wrong types and ranges
    *[
        Case(f"quantity {q!r}", "POST", "/line-orders", {"quantity": q})
        for q in ["abc", 0, -1, 1001, True, False, 1.5, 2.0, "5", None, [1], {"n": 1}]
    ],
    Case("area code as a number", "POST", "/line-orders", {"quantity": 1, "area_code": 415}),
    Case("area code letters", "POST", "/line-orders", {"quantity": 1, "area_code": "SF"}),
    Case(
        "daily limit as a string",
        "POST",
        "/lines/{line}/assign",
        lambda ids: {"sub_account_id": ids.existing, "label": "x", "daily_limit": "10"},
    ),
    Case(
        "daily limit zero",
        "POST",
        "/lines/{line}/assign",
        lambda ids: {"sub_account_id": ids.existing, "label": "x", "daily_limit": 0},
    ),
    Case(
        "label missing",
        "POST",
        "/lines/{line}/assign",
        lambda ids: {"sub_account_id": ids.existing},
    ),
    # --- Query strings
    Case("limit zero", "GET", "/sub-accounts?limit=0"),
    Case("limit too large", "GET", "/lines?limit=100000"),
    Case("negative offset", "GET", "/line-orders?offset=-1"),
    Case("limit not a number", "GET", "/audit-events?limit=ten"),
    *[
        Case(f"offset {offset} on {path}", "GET", f"{path}?offset={offset}")
        for path in ["/sub-accounts", "/lines", "/line-orders", "/audit-events"]
        for offset in [2**31, 2**63, 2**70]
    ],
    Case("filter id not a number", "GET", "/lines?sub_account_id=abc"),
    Case("unknown sub-account status", "GET", "/sub-accounts?status=gone", status=400),
    Case("unknown line status", "GET", "/lines?status=gone", status=400),
]


def _path(case: Case, ids: Ids) -> str:
    return case.path.format(huge=HUGE, **ids.__dict__)


def _send(client: Api, case: Case, ids: Ids):
    path = _path(case, ids)
    if case.method == "GET":
        return client.client.get("/api/v1" + path)
    if case.raw is not None:
        return client.client.generic(
            case.method, "/api/v1" + path, case.raw, content_type="application/json"
        )
    body = case.body(ids) if callable(case.body) else case.body
    return client.call(case.method, path, body)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(world, case):
    client, ids = world
    before = db_snapshot()
    response = _send(client, case, ids)
    assert response.status_code == case.status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["detail"]
    assert body["detail"]
    if case.says:
        assert case.says.lower() in str(body["detail"]).lower()
    assert db_snapshot() == before


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/lines", {"sub_account_id": HUGE}),
        ("/lines", {"sub_account_id": -1}),
        ("/audit-events", {"sub_account_id": HUGE}),
        ("/audit-events", {"line_id": HUGE}),
        ("/lines", {"search": "zz\x00"}),
        ("/sub-accounts", {"search": "zz\x00"}),
        ("/audit-events", {"action": "line.move\x00"}),
        ("/lines", {"search": "\u202e"}),
        ("/lines", {"search": "%_"}),
        ("/sub-accounts", {"search": "%"}),
    ],
)
def test_odd_filters_answer_an_empty_list(world, path, params):
    client, _ = world
    response = client.get(path, **params)
    assert response.status_code == 200, response.content
    assert response.json() == {"items": [], "count": 0}


def test_nul_in_the_partner_parameter_is_a_missing_partner(world, staff_key):
    staff = Api(staff_key)
    response = staff.get_with("/sub-accounts", {"partner": "careful-partner\x00"})
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]


def test_oversized_body_is_refused_cleanly(world):
    client, _ = world
    before = db_snapshot()
    response = client.post("/sub-accounts", {"name": "x", "notes": "n" * (3 * 1024 * 1024)})
    assert 400 <= response.status_code < 500
    assert db_snapshot() == before


def test_the_world_is_as_the_cases_assume(world):
    client, ids = world
    assert client.get(f"/sub-accounts/{ids.merged}").json()["status"] == "merged"
    assert client.get(f"/lines/{ids.disconnected_line}").json()["status"] == "disconnected"
    assert client.get(f"/line-orders/{ids.order}").json()["status"] == "pending"


@pytest.mark.parametrize("path", ["/sub-accounts", "/lines", "/line-orders", "/audit-events"])
def test_largest_offset_answers_an_empty_page(world, path):
    client, _ = world
    response = client.get(path, offset=2**31 - 1)
    assert response.status_code == 200, response.content
    assert response.json()["items"] == []
    assert response.json()["count"] > 0
