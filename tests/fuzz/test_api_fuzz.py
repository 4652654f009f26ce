"""Schemathesis against every operation of /api/v1, in process, as every role of two partners.

Each generated request (positive and negative data from the OpenAPI document, with ids
steered towards the seeded objects of both partners) runs in a savepoint of its own and
must satisfy:

* no 5xx; every status answered is one the document declares for the operation
  (``status_code_conformance``), and the answer matches its declared schema and content
  type, errors included; data that breaks the schema is refused
  (schemathesis' ``negative_data_rejection``);
* audit completeness: a successful write that changed state recorded exactly the audit
  events of ``support.expected_actions``; one that changed nothing, a read, a preview and
  every refused request (4xx) recorded none and changed nothing;
* the tenant wall: a successful request naming objects by id (path or body) answers 404
  when replayed with the other partner's key of the same role, and that replay changes
  nothing; no 2xx ever names another partner's object;
* anonymous requests answer 401; an ``Idempotency-Key`` replays the first answer.

``FUZZ_EXAMPLES`` sets the examples per operation (default 110, at least 5,000 requests
in all); runs are derandomized (the same requests each time) unless ``FUZZ_SEED`` is set.

The campaign runs again as a partner's client key granted one sub-account (domain §8.2;
``FUZZ_CLIENT_EXAMPLES`` per operation, default 12): besides the checks above, a client's
write never succeeds, and a 2xx names (path or body) and lists only the sub-accounts,
lines and statements of its grant.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.db import transaction
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from portal.api import api
from portal.core import clock
from tests.factories import PUBLIC_WEBHOOK_URL
from tests.fuzz import support
from tests.fuzz.support import FIELD_KINDS, PATH_KINDS, World

PREFIX = "/api/v1"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "110"))
CLIENT_EXAMPLES = int(os.environ.get("FUZZ_CLIENT_EXAMPLES", "12"))
SUB_ACCOUNT_SHAPES = {"/sub-accounts", "/sub-accounts/{sub_account_id}"}
SEED = os.environ.get("FUZZ_SEED")
MIN_REQUESTS = 5000 * EXAMPLES // 110

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    negative_data_rejection,
]


def _operations() -> list[tuple[str, str]]:
    document = api.get_openapi_schema(path_prefix=PREFIX + "/")
    return [
        (method.upper(), path)
        for path, methods in document["paths"].items()
        for method in methods
        if method in {"get", "post", "patch", "put", "delete"}
    ]


OPERATIONS = _operations()
STATS: Counter[str] = Counter()
STATUSES: dict[str, Counter[int]] = {}

# Roles drawn per request; repeats weight the draw.
ROLE_DRAW = (
    *("admin", "staff", "manager", "admin", "viewer", "staff", "anonymous"),
    *("billing", "admin", "staff_all", "manager", "staff"),
)


class Failure(AssertionError):
    pass


def _is_write(method: str) -> bool:
    return method in {"POST", "PATCH", "PUT", "DELETE"}


def _template(path: str) -> str:
    return path.removeprefix(PREFIX)


class Campaign:
    """Generates, sends and judges the requests of one operation."""

    def __init__(
        self,
        world: World,
        operation: Any,
        method: str,
        path: str,
        roles: tuple[str, ...] = ROLE_DRAW,
    ) -> None:
        self.world = world
        self.roles = roles
        self.as_client = False  # whether the example being drawn is a client's
        self.operation = operation
        self.method = method
        self.key = (method, _template(path))
        has_input = bool(list(operation.iter_parameters()) or operation.body)
        modes = [schemathesis.GenerationMode.POSITIVE]
        if has_input:
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        # Three positive cases to one negative.
        self.strategies = [operation.as_strategy(generation_mode=mode) for mode in modes]
        self.strategies[:1] *= 3
        self.statuses = STATUSES.setdefault(f"{method} {path}", Counter())

    # --- drawing -----------------------------------------------------------------------

    def _id_of(self, data: st.DataObject, kind: str, side: str, cross: bool) -> int:
        """A seeded id of ``kind``: the partner's own, or with ``cross`` maybe the other's."""
        owner = side
        if cross and data.draw(st.booleans()):
            owner = self.world.other(side)
        granted = self.world.sides[owner].client_ids.get(kind)
        if self.as_client and granted and data.draw(st.booleans()):
            return data.draw(st.sampled_from(granted))  # half the time, within a grant
        return data.draw(st.sampled_from(self.world.sides[owner].ids[kind]))

    def _steer_fields(
        self, data: st.DataObject, values: dict[str, Any], side: str, cross: bool
    ) -> None:
        for name, kind in FIELD_KINDS.items():
            # Hypothesis favours small draws: 0 (the usual case) steers, 3 leaves it be.
            if name not in values or data.draw(st.integers(0, 4)) == 3:
                continue
            if name.endswith("_ids"):
                count = data.draw(st.integers(1, 3))
                values[name] = [self._id_of(data, kind, side, cross) for _ in range(count)]
            else:
                values[name] = self._id_of(data, kind, side, cross)

    def _message_events(self, data: st.DataObject, side: str) -> dict[str, Any]:
        """Plausible platform events for the seeded lines, with a few bad fields."""
        numbers = self.world.sides[side].numbers + self.world.sides[self.world.other(side)].numbers
        recent = [(clock.now() - dt.timedelta(hours=h)).isoformat() for h in (1, 5, 26)]
        when = st.sampled_from(
            [
                *recent,
                "2099-01-01T00:00:00Z",
                "2025-06-01T12:00:00",
                "not a date",
                "1970-01-01T00:00:00+14:00",
            ]
        ) | st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat())
        event = st.fixed_dictionaries(
            {
                "id": st.sampled_from(["e1", "e2", "seed-a-1", "seed-b-2"]) | st.text(max_size=4),
                "line": st.sampled_from(numbers) | st.text(max_size=16),
                "direction": st.sampled_from(["outbound", "inbound", "sideways"]),
                "contact": st.sampled_from(["+12125550000", "alice", " "]) | st.text(max_size=8),
                "occurred_at": when,
            }
        )
        return {"events": data.draw(st.lists(event, max_size=4))}

    def _webhook_fields(self, data: st.DataObject, body: dict[str, Any]) -> None:
        """Endpoint URLs the address rule accepts (a public address literal: no DNS) and
        real event types, most of the time: random text is refused before anything."""
        if "url" in body and data.draw(st.integers(0, 3)) != 3:
            body["url"] = data.draw(
                st.sampled_from(
                    [PUBLIC_WEBHOOK_URL, PUBLIC_WEBHOOK_URL + "?v=2", "http://10.0.0.1/"]
                )
            )
        if "events" in body and data.draw(st.integers(0, 3)) != 3:
            body["events"] = data.draw(
                st.sampled_from([["*"], ["line.moved"], ["invoice.issued", "ping"], []])
            )

    # --- one example ---------------------------------------------------------------------

    def example(self, data: st.DataObject) -> None:
        side = data.draw(st.sampled_from(support.PARTNERS), label="partner")
        role = data.draw(st.sampled_from(self.roles), label="role")
        self.as_client = role == "client"
        case = data.draw(st.one_of(self.strategies), label="case")
        # Mostly the partner's own objects; one request in six may name the other's.
        cross = data.draw(st.integers(0, 5), label="cross") == 3
        # What schemathesis broke on purpose stays broken: steering ids there would
        # turn the request valid while the check still expects a refusal.
        negated = _negated_locations(case)
        for name, value in list((case.path_parameters or {}).items()):
            kind = PATH_KINDS.get(name)
            if kind and "path" not in negated and data.draw(st.integers(0, 9)) != 7:
                case.path_parameters[name] = self._id_of(data, kind, side, cross)
            elif isinstance(value, str) and value.isascii() and value.isdigit():
                # "12" and 12 make the same URL: not the type violation it looks like.
                case.path_parameters[name] = int(value)
        if isinstance(case.query, dict) and "query" not in negated:
            self._steer_fields(data, case.query, side, cross)
        if "body" in negated:
            pass
        elif self.key == ("POST", "/message-events") and data.draw(st.booleans()):
            case.body = self._message_events(data, side)
        elif isinstance(case.body, dict):
            self._steer_fields(data, case.body, side, cross)
            self._webhook_fields(data, case.body)
        idempotency = None
        if self.method == "POST" and data.draw(st.integers(0, 15)) == 7:
            idempotency = data.draw(st.sampled_from(["k1", "k2", "", "k" * 300]))
        with transaction.atomic():
            self._judge(case, side, role, idempotency)
            transaction.set_rollback(True)

    def _send(
        self, case: Any, side: str, role: str, idempotency: str | None = None
    ) -> schemathesis.Response:
        """Send ``case`` with the key of ``role``, written into the case itself so that
        schemathesis re-judges whether the request it checks is still schema-violating."""
        headers = case.headers if case.headers is not None else {}
        for name in ("Authorization", "Idempotency-Key"):
            headers.pop(name, None)
        query = case.query if isinstance(case.query, dict) else {}
        query.pop("partner", None)
        if role in {"staff", "staff_all"}:
            headers["Authorization"] = f"Bearer {self.world.staff_key}"
            if role == "staff":
                query["partner"] = self.world.sides[side].slug
        elif role != "anonymous":
            headers["Authorization"] = f"Bearer {self.world.sides[side].tenant.keys[role]}"
        if idempotency is not None:
            headers["Idempotency-Key"] = idempotency
        case.headers = headers
        if query or case.query is not None:
            case.query = query
        # Reading ``meta`` re-judges the edited containers (call() would take them as given).
        _ = case.meta
        return case.call()

    def _judge(self, case: Any, side: str, role: str, idempotency: str | None) -> None:
        write = _is_write(self.method)
        before = support.snapshot() if write else None
        last_event = support.last_audit_id()
        response = self._send(case, side, role, idempotency)
        STATS["requests"] += 1
        self.statuses[response.status_code] += 1
        where = f"{self.method} {case.formatted_path} as {role} of {side}"
        case.validate_response(response, checks=CHECKS)
        status = response.status_code
        recorded = support.audit_actions_since(last_event)
        if role == "anonymous" and status != 401:
            raise Failure(f"{where}: answered {status} without a key")
        ok = 200 <= status < 300
        if not write:
            if recorded:
                raise Failure(f"{where}: a read recorded audit events {dict(recorded)}")
        else:
            after = support.snapshot()
            changed = support.changed_tables(before, after)
            self._check_audit(where, response, ok, changed, recorded)
        if ok and role == "client":
            self._check_client_scope(where, case, side, response)
        if ok:
            self._check_references(where, case, side, role)
            if role in {*support.PARTNER_ROLES, "staff", "client"} and self._names_objects(case):
                self._check_replay(where, case, side, role)
        if idempotency is not None and status not in {401, 429}:
            self._check_idempotent_replay(where, case, side, role, idempotency, response)

    # --- the custom checks ---------------------------------------------------------------

    def _check_audit(
        self,
        where: str,
        response: schemathesis.Response,
        ok: bool,
        changed: list[str],
        recorded: Counter[str],
    ) -> None:
        if not ok:
            if changed or recorded:
                raise Failure(
                    f"{where}: refused with {response.status_code} but changed {changed} "
                    f"and recorded {dict(recorded)}: {response.text[:300]}"
                )
            return
        # A 204 (a deletion) has no body to count from.
        body = response.json() if response.text else None
        expected = support.expected_actions(self.key, body, changed)
        if not changed:
            if self.key not in support.MAY_BE_NO_OP | support.NEVER_AUDITED:
                raise Failure(f"{where}: answered {response.status_code} but changed nothing")
            expected = Counter()
        elif not expected and self.key not in support.NEVER_AUDITED:
            raise Failure(f"{where}: changed {changed} with no audit event expected")
        if +recorded != +expected:
            raise Failure(
                f"{where}: changed {changed}; audit events {dict(recorded)}, "
                f"expected {dict(expected)}"
            )
        STATS["audited writes"] += 1

    def _names_objects(self, case: Any) -> bool:
        if any(name in PATH_KINDS for name in case.path_parameters or {}):
            return True
        body = case.body if isinstance(case.body, dict) else {}
        return any(body.get(name) not in (None, []) for name in FIELD_KINDS)

    def _named_ids(self, case: Any) -> list[tuple[str, str, Any]]:
        named = [
            (name, PATH_KINDS[name], value)
            for name, value in (case.path_parameters or {}).items()
            if name in PATH_KINDS
        ]
        body = case.body if isinstance(case.body, dict) else {}
        for name, kind in FIELD_KINDS.items():
            value = body.get(name)
            for one in value if isinstance(value, list) else [value]:
                if one is not None:
                    named.append((name, kind, one))
        return named

    def _check_references(self, where: str, case: Any, side: str, role: str) -> None:
        """A 2xx never names another partner's object (path or body)."""
        if role == "staff_all":
            return
        for name, kind, value in self._named_ids(case):
            key = value if isinstance(value, int) else _as_int(value)
            owner = self.world.owner_of(kind, key)
            if owner is not None and owner != side:
                raise Failure(f"{where}: succeeded naming partner {owner}'s {name}={value}")

    def _check_client_scope(
        self, where: str, case: Any, side: str, response: schemathesis.Response
    ) -> None:
        """A client changes nothing, and what it is answered names only its grant."""
        if _is_write(self.method):
            raise Failure(f"{where}: a client's write answered {response.status_code}")
        granted = self.world.sides[side].client_ids
        for name, kind, value in self._named_ids(case):
            if _as_int(value) not in granted.get(kind, ()):
                raise Failure(f"{where}: a client succeeded naming {name}={value}")
        if "json" not in response.headers.get("content-type", [""])[0]:
            return
        body = response.json()
        rows = body.get("items", [body]) if isinstance(body, dict) else []
        # A sub-account's own shape names it by ``id``; every other row by ``sub_account_id``.
        field = "id" if self.key[1] in SUB_ACCOUNT_SHAPES else "sub_account_id"
        for row in rows:
            sub_account_id = row.get(field) if isinstance(row, dict) else None
            if sub_account_id is not None and sub_account_id not in granted["sub_accounts"]:
                raise Failure(f"{where}: a client was answered sub-account {sub_account_id}")
        STATS["client reads"] += 1

    def _check_replay(self, where: str, case: Any, side: str, role: str) -> None:
        other = self.world.other(side)
        before = support.snapshot() if _is_write(self.method) else None
        last_event = support.last_audit_id()
        replay = self._send(case, other, role)
        STATS["replays"] += 1
        if replay.status_code != 404:
            raise Failure(
                f"{where}: replayed as {role} of {other} answered {replay.status_code}, "
                f"not 404: {replay.text[:300]}"
            )
        recorded = support.audit_actions_since(last_event)
        if recorded or (before is not None and before != support.snapshot()):
            raise Failure(f"{where}: the refused replay as {other} changed state ({recorded})")

    def _check_idempotent_replay(
        self,
        where: str,
        case: Any,
        side: str,
        role: str,
        key: str,
        first: schemathesis.Response,
    ) -> None:
        before = support.snapshot()
        last_event = support.last_audit_id()
        again = self._send(case, side, role, key)
        STATS["idempotent replays"] += 1
        if (again.status_code, again.content) != (first.status_code, first.content):
            raise Failure(
                f"{where}: Idempotency-Key {key!r} replay answered {again.status_code} "
                f"{again.text[:200]} after {first.status_code} {first.text[:200]}"
            )
        if support.audit_actions_since(last_event) or before != support.snapshot():
            raise Failure(f"{where}: an Idempotency-Key replay changed state")


def _negated_locations(case: Any) -> set[str]:
    """The parts of a negative case that schemathesis made schema-violating."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return set()
    data = meta.phase.data
    locations = {getattr(data, "parameter_location", None)}
    locations.update(m.parameter_location for m in getattr(data, "mutations", ()))
    locations.update(loc for loc, info in meta.components.items() if info.mode.is_negative)
    return {loc.value for loc in locations if loc is not None}


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=SEED is None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(method: str, path: str, world: World, api_schema: Any, db: None) -> None:
    campaign = Campaign(world, api_schema[path][method], method, path)

    @_settings()
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        campaign.example(data)

    if SEED is not None:
        run = seed(int(SEED))(run)
    run()
    STATS["operations"] += 1


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_as_a_client(
    method: str, path: str, world: World, api_schema: Any, db: None
) -> None:
    """The same campaign with a partner's client key (a few examples per operation)."""
    campaign = Campaign(world, api_schema[path][method], method, path, roles=("client",))

    @settings(_settings(), max_examples=CLIENT_EXAMPLES)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        campaign.example(data)

    if SEED is not None:
        run = seed(int(SEED))(run)
    run()
    STATS["client operations"] += 1


def test_the_client_campaign_reached_its_own_objects() -> None:
    """The client's requests got past the wall to its grant, not only refusals."""
    if STATS["client operations"] != len(OPERATIONS):
        pytest.skip("only part of the client campaign ran in this process")
    assert STATS["client reads"] >= 20, dict(STATS)


def test_served_document_is_the_one_fuzzed(api_schema: Any, db: None) -> None:
    """The operations fuzzed above are exactly those /api/v1/openapi.json serves."""
    served = [
        (method.upper(), path)
        for path, methods in api_schema.raw_schema["paths"].items()
        for method in methods
    ]
    assert sorted(served) == sorted(OPERATIONS)


def test_campaign_size() -> None:
    """At least 5,000 generated requests (scaled by FUZZ_EXAMPLES), and every operation
    both answered 2xx and refused something: the fuzzer reached past validation and
    permissions everywhere, not only the error paths."""
    if STATS["operations"] != len(OPERATIONS):
        pytest.skip("only part of the campaign ran in this process")
    summary = json.dumps(
        {"totals": STATS, "statuses": {k: dict(sorted(v.items())) for k, v in STATUSES.items()}},
        indent=1,
    )
    print(summary)
    assert STATS["requests"] >= MIN_REQUESTS, summary
    if EXAMPLES >= 100:
        never_ok = [op for op, seen in STATUSES.items() if not any(200 <= s < 300 for s in seen)]
        never_refused = [op for op, seen in STATUSES.items() if not any(s >= 400 for s in seen)]
        assert never_ok == [], summary
        assert never_refused == [], summary
