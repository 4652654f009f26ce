"""The tenant wall and the role table, for every endpoint under /api/v1.

``ENDPOINTS`` lists every operation the API serves with the partner roles allowed to
call it and how to build a valid request. One parametrised test per rule runs over
the whole table:

- every endpoint is in the table (a new endpoint without an entry fails);
- each allowed role, and staff acting for the partner, succeeds (so the refusals
  below are refusals of a request that would otherwise work);
- each other role gets 403 and nothing changes;
- another partner's admin addressing our objects (in the path, the body or a
  filter) gets exactly what a missing id gets, and nothing changes;
- no key, a malformed key and a revoked key get 401 and nothing changes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from portal.accounts.services import api_key_authenticate, api_key_revoke
from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.services import alert_rule_create
from portal.api import api as ninja_api
from portal.billing.invoicing import invoice_issue
from portal.billing.models import Statement
from portal.billing.periods import cycle_containing
from portal.billing.resale import sub_account_resale_price_set
from portal.billing.terms import discount_grant
from portal.core import clock
from portal.core.clock import frozen_at
from portal.lines.models import LineOrder
from portal.lines.services import line_move, line_order_create
from portal.notifications.models import Notification
from portal.partners.models import Partner, SubAccount
from portal.webhooks.services import webhook_endpoint_test
from portal.workflows.services.deletions import deletion_request_approve, deletion_request_create
from portal.workflows.services.merges import merge_request_create
from tests.conftest import Api
from tests.factories import (
    PUBLIC_WEBHOOK_URL,
    SYSTEM,
    Tenant,
    db_snapshot,
    make_lines,
    make_staff_key,
    make_sub_account,
    make_tenant,
    make_webhook_endpoint,
)

ALL_ROLES = frozenset({"admin", "manager", "billing", "viewer"})
WRITERS = frozenset({"admin", "manager"})
AUDIT_READERS = frozenset({"admin", "manager", "billing"})
INVOICE_READERS = frozenset({"admin", "billing"})
STATEMENT_READERS = frozenset({"admin", "billing"})
STAFF_ONLY: frozenset[str] = frozenset()  # provider staff only: every partner role gets 403
SUMMARY_READERS = frozenset({"admin", "manager", "billing"})
REQUEST_READERS = frozenset({"admin", "manager", "billing"})
DECIDERS = frozenset({"admin"})  # with self-service on, and not their own request
ADMINS = frozenset({"admin"})  # the partner's own settings
RESALE = frozenset({"admin", "billing"})  # resale prices and margins (domain §8.1)
MISSING_ID = 987654321


@dataclass(frozen=True)
class Refs:
    """Ids of one partner's objects that the requests address."""

    slug: str
    sub_account_id: int  # a standard, empty, active sub-account
    line_id: int  # an active line in Available
    other_line_id: int  # an active line in the standard sub-account
    order_id: int  # a pending line order
    invoice_id: int  # the invoice of the current cycle
    other_sub_account_id: int = 0  # a standard active sub-account holding other_line_id
    merge_request_id: int = 0  # a pending merge request (of two other sub-accounts)
    deletion_request_id: int = 0  # a pending deletion request
    scheduled_deletion_id: int = 0  # an approved (scheduled) deletion request
    discount_id: int = 0  # an active partner-wide discount
    statement_id: int = 0  # a client statement of last cycle's invoice
    alert_rule_id: int = 0  # an alert rule on sub_account_id
    webhook_endpoint_id: int = 0  # an enabled webhook endpoint
    webhook_delivery_id: int = 0  # a pending delivery (a test event) to it
    notification_id: int = 0  # an alert's notification in the keys' shared inbox

    def path_params(self) -> dict[str, int]:
        return {
            "sub_account_id": self.sub_account_id,
            "line_id": self.line_id,
            "order_id": self.order_id,
            "invoice_id": self.invoice_id,
            "merge_request_id": self.merge_request_id,
            "deletion_request_id": self.deletion_request_id,
            "discount_id": self.discount_id,
            "statement_id": self.statement_id,
            "alert_rule_id": self.alert_rule_id,
            "webhook_endpoint_id": self.webhook_endpoint_id,
            "webhook_delivery_id": self.webhook_delivery_id,
            "notification_id": self.notification_id,
        }


Body = Callable[[Refs], Any]
# (what, kind, build(own, id) -> body or query): ``id`` is another partner's object of
# that kind ("sub_account" or "line") or MISSING_ID; both must get the same response.
Reference = tuple[str, str, Callable[[Refs, int], Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    roles: frozenset[str]
    success: int = 200
    body: Body | None = None
    # Objects named in the body (POST) or query string (GET) rather than the path.
    references: tuple[Reference, ...] = field(default_factory=tuple)
    # Path parameters that need another object than ``Refs.path_params`` names.
    params: Callable[[Refs], dict[str, int]] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, refs: Refs, **overrides: int) -> str:
        own = self.params(refs) if self.params else {}
        return self.path.format(**{**refs.path_params(), **own, **overrides})


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/sub-accounts",
        ALL_ROLES,
    ),
    Endpoint(
        "POST",
        "/sub-accounts",
        WRITERS,
        success=201,
        body=lambda r: {"name": "Wall test – Sales"},
    ),
    Endpoint("GET", "/sub-accounts/{sub_account_id}", ALL_ROLES),
    Endpoint(
        "PATCH",
        "/sub-accounts/{sub_account_id}",
        WRITERS,
        body=lambda r: {"contact_name": "Changed"},
    ),
    Endpoint(
        "GET",
        "/lines",
        ALL_ROLES,
        references=(("sub_account_id filter", "sub_account", lambda r, x: {"sub_account_id": x}),),
    ),
    Endpoint(
        "POST",
        "/lines/move",
        WRITERS,
        body=lambda r: {"line_ids": [r.line_id], "sub_account_id": r.sub_account_id},
        references=(
            ("target", "sub_account", lambda r, x: {"line_ids": [r.line_id], "sub_account_id": x}),
            ("line", "line", lambda r, x: {"line_ids": [x], "sub_account_id": r.sub_account_id}),
            (
                "one line among ours",
                "line",
                lambda r, x: {"line_ids": [r.line_id, x], "sub_account_id": r.sub_account_id},
            ),
        ),
    ),
    Endpoint("GET", "/lines/{line_id}", ALL_ROLES),
    Endpoint(
        "POST",
        "/lines/{line_id}/assign",
        WRITERS,
        body=lambda r: {"sub_account_id": r.sub_account_id, "label": "Desk"},
        references=(
            ("target", "sub_account", lambda r, x: {"sub_account_id": x, "label": "Desk"}),
        ),
    ),
    Endpoint(
        "POST",
        "/lines/{line_id}/move",
        WRITERS,
        body=lambda r: {"sub_account_id": r.sub_account_id},
        references=(("target", "sub_account", lambda r, x: {"sub_account_id": x}),),
    ),
    Endpoint("POST", "/lines/{line_id}/disconnect", WRITERS),
    Endpoint("POST", "/line-orders", WRITERS, success=201, body=lambda r: {"quantity": 1}),
    Endpoint("GET", "/line-orders", ALL_ROLES),
    Endpoint("GET", "/line-orders/{order_id}", ALL_ROLES),
    Endpoint("POST", "/line-orders/{order_id}/cancel", WRITERS),
    Endpoint(
        "GET",
        "/audit-events",
        AUDIT_READERS,
        references=(
            ("sub_account_id filter", "sub_account", lambda r, x: {"sub_account_id": x}),
            ("line_id filter", "line", lambda r, x: {"line_id": x}),
        ),
    ),
    # The messaging platform posts with a staff key; no partner role may.
    Endpoint("POST", "/message-events", frozenset(), body=lambda r: {"events": []}),
    Endpoint("GET", "/analytics/sub-accounts", ALL_ROLES),
    Endpoint("GET", "/sub-accounts/{sub_account_id}/analytics", ALL_ROLES),
    Endpoint("GET", "/invoices", INVOICE_READERS),
    Endpoint("GET", "/invoices/{invoice_id}", INVOICE_READERS),
    Endpoint("GET", "/invoices/{invoice_id}/csv", INVOICE_READERS),
    Endpoint("GET", "/invoices/{invoice_id}/pdf", INVOICE_READERS),
    Endpoint("GET", "/billing/summary", SUMMARY_READERS),
    # Merge and deletion requests (workflows). The own partner has self-service approval
    # on, so its admin approves requests it did not make.
    Endpoint("GET", "/merge-requests", REQUEST_READERS),
    Endpoint(
        "POST",
        "/merge-requests/preview",
        WRITERS,
        body=lambda r: {"source_ids": [r.sub_account_id], "target_id": r.other_sub_account_id},
        references=(
            (
                "source",
                "sub_account",
                lambda r, x: {"source_ids": [x], "target_id": r.sub_account_id},
            ),
            (
                "target",
                "sub_account",
                lambda r, x: {"source_ids": [r.sub_account_id], "target_id": x},
            ),
        ),
    ),
    Endpoint(
        "POST",
        "/merge-requests",
        WRITERS,
        success=201,
        body=lambda r: {"source_ids": [r.sub_account_id], "target_id": r.other_sub_account_id},
        references=(
            (
                "source",
                "sub_account",
                lambda r, x: {"source_ids": [x], "target_id": r.sub_account_id},
            ),
            (
                "target",
                "sub_account",
                lambda r, x: {"source_ids": [r.sub_account_id], "target_id": x},
            ),
        ),
    ),
    Endpoint("GET", "/merge-requests/{merge_request_id}", REQUEST_READERS),
    Endpoint("POST", "/merge-requests/{merge_request_id}/approve", DECIDERS),
    Endpoint(
        "POST",
        "/merge-requests/{merge_request_id}/reject",
        DECIDERS,
        body=lambda r: {"reason": "Not this quarter."},
    ),
    Endpoint("POST", "/merge-requests/{merge_request_id}/cancel", WRITERS),
    Endpoint("GET", "/deletion-requests", REQUEST_READERS),
    Endpoint(
        "POST",
        "/deletion-requests",
        WRITERS,
        success=201,
        body=lambda r: {"sub_account_id": r.sub_account_id},
        references=(
            ("sub-account", "sub_account", lambda r, x: {"sub_account_id": x}),
            (
                "move target",
                "sub_account",
                lambda r, x: {
                    "sub_account_id": r.other_sub_account_id,
                    "line_disposition": "move",
                    "move_to_id": x,
                },
            ),
        ),
    ),
    Endpoint("GET", "/deletion-requests/{deletion_request_id}", REQUEST_READERS),
    Endpoint("POST", "/deletion-requests/{deletion_request_id}/approve", DECIDERS),
    Endpoint(
        "POST",
        "/deletion-requests/{deletion_request_id}/reject",
        DECIDERS,
        body=lambda r: {"reason": "Still in use."},
    ),
    Endpoint("POST", "/deletion-requests/{deletion_request_id}/cancel", WRITERS),
    Endpoint(
        "POST",
        "/deletion-requests/{deletion_request_id}/restore",
        frozenset({"admin"}),
        params=lambda r: {"deletion_request_id": r.scheduled_deletion_id},
    ),
    # Billing adjustments: staff grant and finalize; partner admins and billing read.
    Endpoint("POST", "/invoices/{invoice_id}/finalize", STAFF_ONLY),
    Endpoint(
        "GET",
        "/discounts",
        INVOICE_READERS,
        references=(("sub_account_id filter", "sub_account", lambda r, x: {"sub_account_id": x}),),
    ),
    Endpoint(
        "POST",
        "/discounts",
        STAFF_ONLY,
        success=201,
        body=lambda r: {"kind": "percent", "value": "5"},
    ),
    Endpoint("GET", "/discounts/{discount_id}", INVOICE_READERS),
    Endpoint("POST", "/discounts/{discount_id}/remove", STAFF_ONLY),
    Endpoint(
        "GET",
        "/credits",
        INVOICE_READERS,
        references=(("sub_account_id filter", "sub_account", lambda r, x: {"sub_account_id": x}),),
    ),
    Endpoint(
        "POST",
        "/credits",
        STAFF_ONLY,
        success=201,
        body=lambda r: {"amount": "5.00", "reason": "Goodwill"},
    ),
    Endpoint("GET", "/credits/balance", INVOICE_READERS),
    Endpoint("GET", "/partner", ALL_ROLES),
    Endpoint(
        "PATCH",
        "/partner",
        ADMINS,
        body=lambda r: {"self_service_requests": False, "deletion_retention_days": 45},
    ),
    Endpoint(
        "GET",
        "/statements",
        STATEMENT_READERS,
        references=(("sub_account_id filter", "sub_account", lambda r, x: {"sub_account_id": x}),),
    ),
    Endpoint("GET", "/statements/{statement_id}", STATEMENT_READERS),
    Endpoint("GET", "/statements/{statement_id}/csv", STATEMENT_READERS),
    Endpoint("GET", "/statements/{statement_id}/pdf", STATEMENT_READERS),
    # Alert rules: every role reads them and the alerts; admins and managers write.
    Endpoint("GET", "/alert-rules", ALL_ROLES),
    Endpoint(
        "POST",
        "/alert-rules",
        WRITERS,
        success=201,
        body=lambda r: {
            "metric": "volume_limit_usage",
            "comparator": "above",
            "threshold": "0.8",
            "sub_account_id": r.sub_account_id,
        },
        references=(
            (
                "watched sub-account",
                "sub_account",
                lambda r, x: {
                    "metric": "volume_limit_usage",
                    "comparator": "above",
                    "threshold": "0.8",
                    "sub_account_id": x,
                },
            ),
        ),
    ),
    Endpoint("GET", "/alert-rules/{alert_rule_id}", ALL_ROLES),
    Endpoint(
        "PATCH",
        "/alert-rules/{alert_rule_id}",
        WRITERS,
        body=lambda r: {"threshold": 0.9},
        references=(("watched sub-account", "sub_account", lambda r, x: {"sub_account_id": x}),),
    ),
    Endpoint("DELETE", "/alert-rules/{alert_rule_id}", WRITERS, success=204),
    Endpoint(
        "GET",
        "/alerts",
        ALL_ROLES,
        references=(("sub_account_id filter", "sub_account", lambda r, x: {"sub_account_id": x}),),
    ),
    Endpoint("GET", "/analytics/capacity", ALL_ROLES),
    Endpoint("GET", "/billing/settings", INVOICE_READERS),
    Endpoint("PATCH", "/billing/settings", STAFF_ONLY, body=lambda r: {"line_price": "55.00"}),
    Endpoint("GET", "/billing/resale", RESALE),
    Endpoint("PATCH", "/billing/resale", RESALE, body=lambda r: {"default_resale_price": "70.00"}),
    Endpoint("GET", "/billing/margins", RESALE),
    # Webhooks: the partner's admins only, for reading too (they hold the secrets).
    Endpoint("GET", "/webhook-endpoints", ADMINS),
    Endpoint(
        "POST",
        "/webhook-endpoints",
        ADMINS,
        success=201,
        body=lambda r: {"url": PUBLIC_WEBHOOK_URL, "events": ["line.moved"]},
    ),
    Endpoint("GET", "/webhook-endpoints/{webhook_endpoint_id}", ADMINS),
    Endpoint(
        "PATCH",
        "/webhook-endpoints/{webhook_endpoint_id}",
        ADMINS,
        body=lambda r: {"description": "Changed"},
    ),
    Endpoint("DELETE", "/webhook-endpoints/{webhook_endpoint_id}", ADMINS, success=204),
    Endpoint("POST", "/webhook-endpoints/{webhook_endpoint_id}/rotate-secret", ADMINS),
    Endpoint("POST", "/webhook-endpoints/{webhook_endpoint_id}/test", ADMINS, success=202),
    Endpoint("GET", "/webhook-endpoints/{webhook_endpoint_id}/deliveries", ADMINS),
    Endpoint("GET", "/webhook-deliveries/{webhook_delivery_id}", ADMINS),
    Endpoint("POST", "/webhook-deliveries/{webhook_delivery_id}/retry", ADMINS),
    # Notifications: a key reads its partner's shared inbox, the kinds its role reads (an
    # alert: every role); marking read is the inbox's own state.
    Endpoint("GET", "/notifications", ALL_ROLES),
    Endpoint("POST", "/notifications/read-all", ALL_ROLES),
    Endpoint("POST", "/notifications/{notification_id}/read", ALL_ROLES),
]

OBJECT_ENDPOINTS = [e for e in ENDPOINTS if "{" in e.path and e.roles]
# Partner keys are refused these outright (403); staff acting for the other partner
# must find our objects missing instead (see the test below).
STAFF_OBJECT_ENDPOINTS = [e for e in ENDPOINTS if "{" in e.path and not e.roles]
REFERENCES = [
    pytest.param(e, kind, build, id=f"{e} {name}")
    for e in ENDPOINTS
    for name, kind, build in e.references
]
ROLE_CASES = [
    pytest.param(e, role, id=f"{e} as {role}") for e in ENDPOINTS for role in sorted(ALL_ROLES)
]


def _openapi_operations() -> set[tuple[str, str]]:
    prefix = "/api/v1"
    operations = set()
    for path, item in ninja_api.get_openapi_schema()["paths"].items():
        assert path.startswith(prefix), path
        for method in item:
            operations.add((method.upper(), path.removeprefix(prefix)))
    return operations


def test_every_endpoint_is_in_the_table():
    served = _openapi_operations()
    listed = {e.key for e in ENDPOINTS}
    assert len(listed) == len(ENDPOINTS), "an endpoint is listed twice"
    assert served - listed == set(), "add these endpoints to ENDPOINTS in test_tenant_wall.py"
    assert listed - served == set(), "these ENDPOINTS entries are no longer served"


# --- The world every case runs in -------------------------------------------------------


@dataclass
class World:
    own: Tenant
    other: Tenant
    own_refs: Refs
    other_refs: Refs
    staff_key: str


def _past_statement(tenant: Tenant) -> int:
    """A client statement of last cycle's invoice: a sub-account with a resale price that
    has held a line since the cycle before (history laid down in the past, before the
    pending orders, so no stock is left to fulfil them)."""
    partner = tenant.partner
    last = cycle_containing(clock.now(), partner.timezone).previous()
    with frozen_at(last.previous().start + dt.timedelta(days=1)):
        client = make_sub_account(partner, "Eta – Client")
        (line,) = make_lines(partner, 1)
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=client.pk)
        sub_account_resale_price_set(
            principal=SYSTEM.acting_for(partner.pk), sub_account_id=client.pk, price="70.00"
        )
    with frozen_at(last.start):
        invoice = invoice_issue(principal=SYSTEM, partner=partner, cycle=last)
    return Statement.objects.get(invoice=invoice, sub_account=client).pk


def _refs(tenant: Tenant, lines, order_id: int, statement_id: int) -> Refs:
    partner = tenant.partner
    sa = make_sub_account(partner, "Alpha – Sales")
    move_into = make_sub_account(partner, "Beta – Support")
    line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=move_into.pk)
    invoice = invoice_issue(
        principal=SYSTEM,
        partner=partner,
        cycle=cycle_containing(clock.now(), partner.timezone),
    )
    # Requests on sub-accounts of their own, so that their locks leave the others free.
    Partner.objects.filter(pk=partner.pk).update(self_service_requests=True)
    requester = SYSTEM.acting_for(partner.pk)
    merge = merge_request_create(
        principal=requester,
        source_ids=[make_sub_account(partner, "Gamma – Old").pk],
        target_id=make_sub_account(partner, "Delta – New").pk,
    )
    deletion = deletion_request_create(
        principal=requester, sub_account_id=make_sub_account(partner, "Epsilon – Gone").pk
    )
    scheduled = deletion_request_create(
        principal=requester, sub_account_id=make_sub_account(partner, "Zeta – Gone").pk
    )
    deletion_request_approve(principal=requester, request_id=scheduled.pk)
    discount = discount_grant(principal=requester, kind="amount", value="1.00")
    rule = alert_rule_create(
        principal=requester,
        metric="response_rate",
        comparator="below",
        threshold="0.2",
        sub_account_id=sa.pk,
    )
    endpoint = make_webhook_endpoint(partner)
    delivery = webhook_endpoint_test(principal=requester, endpoint_id=endpoint.pk)
    # An alert that fires (a line is in Available): its notification in the shared inbox.
    alert_rule_create(
        principal=requester, metric="available_lines", comparator="above", threshold="0"
    )
    alerts_evaluate(principal=EVALUATOR.acting_for(partner.pk))
    notification = Notification.objects.get(
        partner=partner, recipient__isnull=True, kind="alert.triggered"
    )
    return Refs(
        slug=partner.slug,
        sub_account_id=sa.pk,
        line_id=lines[0].pk,
        other_line_id=lines[1].pk,
        order_id=order_id,
        invoice_id=invoice.pk,
        other_sub_account_id=move_into.pk,
        merge_request_id=merge.pk,
        deletion_request_id=deletion.pk,
        scheduled_deletion_id=scheduled.pk,
        discount_id=discount.pk,
        statement_id=statement_id,
        alert_rule_id=rule.pk,
        webhook_endpoint_id=endpoint.pk,
        webhook_delivery_id=delivery.pk,
        notification_id=notification.pk,
    )


@pytest.fixture
def world(db) -> World:
    own = make_tenant("Own Partner")
    other = make_tenant("Other Partner")
    own_lines = make_lines(own.partner, 2)
    other_lines = make_lines(other.partner, 2)
    own_statement, other_statement = _past_statement(own), _past_statement(other)
    # Orders after the lines so that no stock is left to fulfil them: they stay pending.
    own_order = line_order_create(principal=SYSTEM.acting_for(own.partner.pk), quantity=5)
    other_order = line_order_create(principal=SYSTEM.acting_for(other.partner.pk), quantity=5)
    return World(
        own=own,
        other=other,
        own_refs=_refs(own, own_lines, own_order.pk, own_statement),
        other_refs=_refs(other, other_lines, other_order.pk, other_statement),
        staff_key=make_staff_key(),
    )


def _send(client: Api, endpoint: Endpoint, url: str, body: Any, query: dict | None = None):
    if endpoint.method == "GET":
        return client.get_with(url, query)
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return client.call(endpoint.method, url, body)


def _call(client: Api, endpoint: Endpoint, refs: Refs, query: dict | None = None):
    body = endpoint.body(refs) if endpoint.body else None
    return _send(client, endpoint, endpoint.url(refs), body, query)


def _same_answer(foreign, missing, foreign_id: int) -> None:
    """The two responses are indistinguishable once the id itself is set aside."""
    assert foreign.status_code == missing.status_code
    assert foreign.get("Content-Type") == missing.get("Content-Type")
    normalise = re.compile(rf"\b({foreign_id}|{MISSING_ID})\b")
    assert normalise.sub("<id>", foreign.content.decode()) == normalise.sub(
        "<id>", missing.content.decode()
    )


# --- Roles -------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "role"), ROLE_CASES)
def test_role_table(world, endpoint, role):
    client = Api(world.own.keys[role])
    before = db_snapshot()
    response = _call(client, endpoint, world.own_refs)
    if role in endpoint.roles:
        assert response.status_code == endpoint.success, response.content
    else:
        assert response.status_code == 403, response.content
        assert response.json()["detail"]
        assert db_snapshot() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_staff_acting_for_the_partner_may_do_everything(world, endpoint):
    client = Api(world.staff_key)
    response = _call(client, endpoint, world.own_refs, {"partner": world.own_refs.slug})
    assert response.status_code == endpoint.success, response.content


# --- Another partner -----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", OBJECT_ENDPOINTS, ids=str)
def test_another_partners_object_in_the_path_answers_like_a_missing_one(world, endpoint):
    """The other partner's admin addresses our objects; the path names each in turn."""
    intruder = Api(world.other.keys["admin"])
    before = db_snapshot()
    for param, value in world.own_refs.path_params().items():
        if "{" + param + "}" not in endpoint.path:
            continue
        body = endpoint.body(world.other_refs) if endpoint.body else None
        foreign = _send(intruder, endpoint, endpoint.url(world.other_refs, **{param: value}), body)
        missing = _send(
            intruder, endpoint, endpoint.url(world.other_refs, **{param: MISSING_ID}), body
        )
        assert foreign.status_code == 404, foreign.content
        assert set(foreign.json()) == {"detail"}
        _same_answer(foreign, missing, value)
    assert db_snapshot() == before


@pytest.mark.parametrize("endpoint", STAFF_OBJECT_ENDPOINTS, ids=str)
def test_staff_acting_for_another_partner_find_our_objects_missing(world, endpoint):
    """Staff-only endpoints: staff acting for the other partner address our objects."""
    staff = Api(world.staff_key)
    query = {"partner": world.other_refs.slug}
    before = db_snapshot()
    for param, value in world.own_refs.path_params().items():
        if "{" + param + "}" not in endpoint.path:
            continue
        body = endpoint.body(world.other_refs) if endpoint.body else None
        url = endpoint.url(world.other_refs, **{param: value})
        foreign = _send(staff, endpoint, url, body, query)
        missing_url = endpoint.url(world.other_refs, **{param: MISSING_ID})
        missing = _send(staff, endpoint, missing_url, body, query)
        assert foreign.status_code == 404, foreign.content
        _same_answer(foreign, missing, value)
    assert db_snapshot() == before


@pytest.mark.parametrize(("endpoint", "kind", "build"), REFERENCES)
def test_another_partners_object_in_the_body_or_query_answers_like_a_missing_one(
    world, endpoint, kind, build
):
    """Our own key names the other partner's object in a body or a filter."""
    client = Api(world.own.keys["admin"])
    theirs = world.other_refs
    foreign_ids = {
        "sub_account": [theirs.sub_account_id],
        "line": [theirs.line_id, theirs.other_line_id],
    }[kind]
    before = db_snapshot()
    for foreign_id in foreign_ids:
        payload = build(world.own_refs, foreign_id)
        missing_payload = build(world.own_refs, MISSING_ID)
        if endpoint.method == "GET":
            foreign = client.get_with(endpoint.url(world.own_refs), payload)
            missing = client.get_with(endpoint.url(world.own_refs), missing_payload)
            assert foreign.status_code == 200
            assert foreign.json()["count"] == 0
        else:
            foreign = client.call(endpoint.method, endpoint.url(world.own_refs), payload)
            missing = client.call(endpoint.method, endpoint.url(world.own_refs), missing_payload)
            assert foreign.status_code in {404, 409}, foreign.content
        _same_answer(foreign, missing, foreign_id)
    assert db_snapshot() == before


@pytest.mark.parametrize(
    "path",
    [
        "/sub-accounts",
        "/lines",
        "/line-orders",
        "/audit-events",
        "/invoices",
        "/merge-requests",
        "/deletion-requests",
        "/alert-rules",
        "/webhook-endpoints",
        "/notifications",
    ],
    ids=str,
)
def test_lists_show_nothing_of_another_partner(world, path):
    mine = Api(world.own.keys["admin"]).get(path, limit=500).json()
    theirs = Api(world.other.keys["admin"]).get(path, limit=500).json()
    assert mine["count"] > 0
    assert theirs["count"] > 0
    assert not {i["id"] for i in mine["items"]} & {i["id"] for i in theirs["items"]}
    if path == "/sub-accounts":
        own_ids = set(
            SubAccount.objects.filter(partner=world.own.partner).values_list("id", flat=True)
        )
        assert {i["id"] for i in mine["items"]} <= own_ids


# --- Credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_no_bad_or_revoked_key_gets_401(world, endpoint):
    revoked_raw = world.own.keys["manager"]
    api_key_revoke(
        principal=world.own.principal("admin"), key_id=api_key_authenticate(revoked_raw).pk
    )
    before = db_snapshot()
    for client in (
        Api(None),
        Api(None, authorization="Bearer rpp_0000_not-a-key"),
        Api(None, authorization=f"Token {world.own.keys['admin']}"),
        Api(revoked_raw),
    ):
        response = _call(client, endpoint, world.own_refs)
        assert response.status_code == 401, (endpoint, response.content)
        assert response.json() == {"detail": "Missing, unknown or revoked API key."}
    assert db_snapshot() == before


# --- Staff -------------------------------------------------------------------------------


def test_staff_key_sees_across_partners(world):
    staff = Api(world.staff_key)
    partners = {world.own.partner.pk, world.other.partner.pk}
    listed = staff.get("/sub-accounts", limit=500).json()["items"]
    assert {SubAccount.objects.get(pk=item["id"]).partner_id for item in listed} == partners
    for refs in (world.own_refs, world.other_refs):
        assert staff.get(f"/lines/{refs.line_id}").status_code == 200
        assert staff.get(f"/sub-accounts/{refs.sub_account_id}").status_code == 200
        assert staff.get(f"/line-orders/{refs.order_id}").status_code == 200
    orders = staff.get("/line-orders", limit=500).json()
    assert orders["count"] == LineOrder.objects.count()
    assert {world.own_refs.order_id, world.other_refs.order_id} <= {
        item["id"] for item in orders["items"]
    }


def test_staff_acting_for_one_partner_sees_only_that_partner(world):
    staff = Api(world.staff_key)
    own = {"partner": world.own_refs.slug}
    assert staff.get_with(f"/lines/{world.own_refs.line_id}", own).status_code == 200
    assert staff.get_with(f"/lines/{world.other_refs.line_id}", own).status_code == 404
    listed = staff.get_with("/sub-accounts", own).json()["items"]
    assert {SubAccount.objects.get(pk=item["id"]).partner_id for item in listed} == {
        world.own.partner.pk
    }


def test_staff_creates_a_sub_account_for_the_named_partner(world):
    staff = Api(world.staff_key)
    before = db_snapshot()
    unnamed = staff.post("/sub-accounts", {"name": "Made by staff"})
    assert unnamed.status_code == 400
    assert "partner" in unnamed.json()["detail"]
    unknown = staff.post("/sub-accounts?partner=no-such-partner", {"name": "Made by staff"})
    assert unknown.status_code == 404
    assert db_snapshot() == before
    created = staff.post(f"/sub-accounts?partner={world.other_refs.slug}", {"name": "By staff"})
    assert created.status_code == 201, created.content
    sa = SubAccount.objects.get(pk=created.json()["id"])
    assert sa.partner_id == world.other.partner.pk
    assert sa.name == "By staff"


def test_partner_keys_ignore_the_partner_parameter(world):
    own = Api(world.own.keys["admin"])
    response = own.post(f"/sub-accounts?partner={world.other_refs.slug}", {"name": "Sneaky"})
    assert response.status_code == 201
    assert SubAccount.objects.get(pk=response.json()["id"]).partner_id == world.own.partner.pk
    peek = own.get_with(f"/lines/{world.other_refs.line_id}", {"partner": world.other_refs.slug})
    assert peek.status_code == 404
