"""The fuzzing campaign's world and rules: seed data, state snapshots, expected audit events.

Two partners ("a" and "b") are seeded the same way through the services, with one API
key per role, so any request one makes can be replayed by the other with the same role.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import connection

from portal.accounts.services import api_key_create
from portal.alerts.models import AlertRule
from portal.alerts.services import alert_rule_create
from portal.analytics.ingestion import message_events_ingest
from portal.audit.models import AuditEvent
from portal.billing.invoicing import invoice_finalize, invoice_issue
from portal.billing.models import Discount, Invoice, Statement
from portal.billing.periods import cycle_containing
from portal.billing.resale import resale_default_set, sub_account_resale_price_set
from portal.billing.terms import credit_grant, discount_grant, discount_remove
from portal.core import clock
from portal.core.clock import frozen_at
from portal.core.principal import Principal
from portal.lines.models import Line, LineOrder
from portal.lines.services import (
    line_assign,
    line_disconnect,
    line_order_cancel,
    line_order_create,
)
from portal.notifications.models import Notification
from portal.partners.selectors import available_pool
from portal.webhooks.models import WebhookDelivery, WebhookEndpoint
from portal.webhooks.services import webhook_endpoint_test, webhook_endpoint_update
from portal.workflows.models import DeletionRequest, MergeRequest
from portal.workflows.services.deletions import (
    deletion_request_approve,
    deletion_request_create,
    deletion_request_reject,
)
from portal.workflows.services.merges import merge_request_create, merge_request_reject
from tests.factories import (
    SYSTEM,
    Tenant,
    make_lines,
    make_staff_key,
    make_sub_account,
    make_tenant,
    make_webhook_endpoint,
)

PARTNERS = ("a", "b")
PARTNER_ROLES = ("admin", "manager", "billing", "viewer")
# "staff" acts for the partner through ?partner=<slug>; "staff_all" names no partner
# (sees every partner's objects, so it has no "other partner" to replay as).
ROLES = (*PARTNER_ROLES, "staff", "staff_all", "anonymous")

# Path parameter → the kind of object it names.
PATH_KINDS = {
    "sub_account_id": "sub_accounts",
    "line_id": "lines",
    "order_id": "orders",
    "invoice_id": "invoices",
    "discount_id": "discounts",
    "statement_id": "statements",
    "merge_request_id": "merges",
    "deletion_request_id": "deletions",
    "alert_rule_id": "alert_rules",
    "webhook_endpoint_id": "webhook_endpoints",
    "webhook_delivery_id": "webhook_deliveries",
    "notification_id": "notifications",
}
# Body and query fields that name objects, and the kind they name.
FIELD_KINDS = {
    "sub_account_id": "sub_accounts",
    "from_sub_account_id": "sub_accounts",
    "target_id": "sub_accounts",
    "move_to_id": "sub_accounts",
    "source_ids": "sub_accounts",
    "line_id": "lines",
    "line_ids": "lines",
    "rule_id": "alert_rules",
}


@dataclass
class Side:
    """One partner of the campaign and the ids of everything seeded for it."""

    tenant: Tenant
    slug: str
    ids: dict[str, list[int]] = field(default_factory=dict)
    numbers: list[str] = field(default_factory=list)
    # The client key's grant (``tenant.keys["client"]``): the ids of the kinds a client
    # reads that it may name (domain §8.2); every other id answers it like a missing one.
    client_ids: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class World:
    sides: dict[str, Side]
    staff_key: str

    def other(self, name: str) -> str:
        return "b" if name == "a" else "a"

    def owner_of(self, kind: str, object_id: Any) -> str | None:
        """Which seeded partner owns the object ``object_id`` of ``kind``, if any."""
        for name, side in self.sides.items():
            if object_id in side.ids.get(kind, ()):
                return name
        return None


def _seed_side(name: str, staff: Principal, past: dt.datetime) -> Side:
    with frozen_at(past):
        tenant = make_tenant(f"Fuzz Partner {name.upper()}", self_service_requests=True)
        partner = tenant.partner
        as_staff = staff.acting_for(partner.pk)
        subs = [make_sub_account(partner, f"{name.upper()} client {i} – Sales") for i in range(8)]
        s_main, s_two, s_rejected, s_src, s_dst, s_del, s_gone, s_spare = subs
        lines = make_lines(partner, 10)
        for line, target in zip(
            lines[:7], [s_main, s_main, s_main, s_two, s_two, s_src, s_del], strict=True
        ):
            line_assign(
                principal=as_staff, line_id=line.pk, sub_account_id=target.pk, label="Seeded"
            )
        line_disconnect(principal=as_staff, line_id=lines[7].pk)  # lines 8, 9 stay in Available
        # Resale prices from the next cycle: the invoices below carry client statements.
        resale_default_set(principal=as_staff, price="70.00")
        sub_account_resale_price_set(principal=as_staff, sub_account_id=s_two.pk, price="82.50")
        # No stock in this area code: the order waits (and never takes the other side's lines).
        waiting = line_order_create(principal=as_staff, quantity=2, area_code="907")
        cancelled = line_order_create(principal=as_staff, quantity=1, area_code="907")
        line_order_cancel(principal=as_staff, order_id=cancelled.pk)
        # Workflows: a pending merge (locks both ends), a rejected one, a pending deletion
        # (lines to move), a rejected deletion and a scheduled one (restorable).
        merge_request_create(
            principal=as_staff, source_ids=[s_src.pk], target_id=s_dst.pk, reason="Seeded"
        )
        rejected = merge_request_create(
            principal=as_staff, source_ids=[s_rejected.pk], target_id=s_spare.pk
        )
        merge_request_reject(principal=as_staff, request_id=rejected.pk, reason="No")
        deletion_request_create(
            principal=as_staff,
            sub_account_id=s_del.pk,
            line_disposition="move",
            move_to_id=s_main.pk,
            reason="Seeded",
        )
        refused = deletion_request_create(principal=as_staff, sub_account_id=s_rejected.pk)
        deletion_request_reject(principal=as_staff, request_id=refused.pk, reason="No")
    # Scheduled now, so its purge date is ahead and it can still be restored.
    scheduled = deletion_request_create(principal=as_staff, sub_account_id=s_gone.pk)
    deletion_request_approve(principal=as_staff, request_id=scheduled.pk)
    # Invoices: last cycle's (finalized) and this cycle's (a draft staff may finalize).
    now = clock.now()
    current = cycle_containing(now, partner.timezone)
    previous = cycle_containing(current.start - dt.timedelta(days=1), partner.timezone)
    for cycle in (previous, current):
        with frozen_at(cycle.start):
            invoice_issue(principal=as_staff, partner=partner, cycle=cycle)
    invoice_finalize(
        principal=as_staff,
        invoice=Invoice.objects.get(partner=partner, period_start=previous.start),
    )
    discount_grant(principal=as_staff, kind="percent", value="10", name="Promo")
    removed = discount_grant(principal=as_staff, kind="amount", value="5", sub_account_id=s_main.pk)
    discount_remove(principal=as_staff, discount_id=removed.pk)
    credit_grant(principal=as_staff, amount="7.50", reason="Goodwill")
    credit_grant(principal=as_staff, amount="2", reason="Outage", sub_account_id=s_two.pk)
    # Webhooks: an endpoint with a test event waiting, and a disabled one.
    hooked = make_webhook_endpoint(partner)
    webhook_endpoint_test(principal=as_staff, endpoint_id=hooked.pk)
    paused = make_webhook_endpoint(partner, events=("line.moved",))
    webhook_endpoint_update(principal=as_staff, endpoint_id=paused.pk, enabled=False)
    numbers = [line.number for line in lines]
    message_events_ingest(
        principal=staff,
        events=[
            {
                "id": f"seed-{name}-{i}",
                "line": numbers[i % 3],
                "direction": "outbound" if i % 2 == 0 else "inbound",
                "contact": f"+1212555{i % 4:04d}",
                "occurred_at": (now - dt.timedelta(hours=30 - i)).isoformat(),
            }
            for i in range(12)
        ],
    )
    pid = partner.pk
    # Rules but no alerts: an evaluation's alerts would make a rule's PATCH or DELETE
    # record a resolution per alert, which its answer does not count.
    for rule in (
        {"metric": "volume_limit_usage", "comparator": "above", "threshold": "0.8"},
        {"metric": "response_rate", "comparator": "below", "threshold": "0.2"}
        | {"sub_account_id": s_main.pk},
        {"metric": "available_lines", "comparator": "below", "threshold": 2},
    ):
        alert_rule_create(principal=as_staff, **rule)
    # Ordered most useful first (the fuzzer draws early entries more often): unlocked
    # standard sub-accounts, then the pool and the locked or deleted ones; lines in
    # Available, then assigned, then the disconnected one.
    ids = {
        "sub_accounts": [
            *(s.pk for s in (s_main, s_two, s_spare, s_rejected)),
            available_pool(pid).pk,
            *(s.pk for s in (s_src, s_dst, s_del, s_gone)),
        ],
        "lines": [line.pk for line in (lines[8], lines[9], *lines[:7], lines[7])],
        # Newest first: the waiting order, the pending requests, this cycle's draft invoice,
        # the active discount.
        "orders": [
            waiting.pk,
            *(pk for pk in _ids(LineOrder, pid, "pk") if pk not in {waiting.pk, cancelled.pk}),
            cancelled.pk,
        ],
        "invoices": _ids(Invoice, pid, "-pk"),
        "discounts": _ids(Discount, pid, "pk"),
        "statements": _ids(Statement, pid, "-pk"),
        "merges": _ids(MergeRequest, pid, "pk"),
        "deletions": _ids(DeletionRequest, pid, "pk"),
        "alert_rules": _ids(AlertRule, pid, "pk"),
        "webhook_endpoints": _ids(WebhookEndpoint, pid, "pk"),
        "webhook_deliveries": _ids(WebhookDelivery, pid, "pk"),
        # The keys' shared inbox: the invoices issued above.
        "notifications": list(
            Notification.objects.filter(partner_id=pid, recipient__isnull=True)
            .order_by("-pk")
            .values_list("pk", flat=True)
        ),
    }
    # A client of the partner granted one sub-account, with its lines and statements.
    tenant.keys["client"] = api_key_create(
        principal=as_staff, name="client key", role="client", sub_account_ids=[s_two.pk]
    ).raw
    client_ids = {
        "sub_accounts": [s_two.pk],
        "lines": list(Line.objects.filter(sub_account=s_two).values_list("pk", flat=True)),
        "statements": list(
            Statement.objects.filter(sub_account=s_two).values_list("pk", flat=True)
        ),
    }
    return Side(tenant=tenant, slug=partner.slug, ids=ids, numbers=numbers, client_ids=client_ids)


def _ids(model: type[Any], partner_id: int, order: str) -> list[int]:
    return list(
        model.objects.filter(partner_id=partner_id).order_by(order).values_list("pk", flat=True)
    )


def seed_world() -> World:
    """Both partners, seeded 70 days back so invoices and workflows have history."""
    staff = SYSTEM
    past = clock.now() - dt.timedelta(days=70)
    sides = {name: _seed_side(name, staff, past) for name in PARTNERS}
    return World(sides=sides, staff_key=make_staff_key())


# --- State snapshots -------------------------------------------------------------------
# Audit events are counted apart. Left out as bookkeeping, not domain state: API keys'
# last use, idempotency records, the security log, login throttling, sessions, rate-limit
# buckets, worker rows, and the analytics tables (message events and their rollups are
# derived data that ingestion logs but does not audit, by design).
_SNAPSHOT_APPS = (
    "partners",
    "lines",
    "billing",
    "workflows",
    "accounts",
    "alerts",
    "webhooks",
    "notifications",
)
_SKIP_MODELS = {
    "alerts.AlertEvaluation",
    "accounts.IdempotencyRecord",
    "accounts.LoginAttempt",
    "accounts.UserSession",
    "accounts.SecurityEvent",
}
_SKIP_FIELDS = {"accounts.ApiKey": {"last_used_at"}, "accounts.User": {"last_login"}}


def _snapshot_tables() -> list[tuple[str, str, str, str]]:
    """(model label, quoted table, quoted columns, quoted primary key) per domain table."""
    qn = connection.ops.quote_name
    tables = []
    for label in _SNAPSHOT_APPS:
        for model in apps.get_app_config(label).get_models():
            name = model._meta.label
            if name in _SKIP_MODELS:
                continue
            skip = _SKIP_FIELDS.get(name, set())
            columns = ", ".join(
                qn(f.column) for f in model._meta.concrete_fields if f.name not in skip
            )
            tables.append((name, qn(model._meta.db_table), columns, qn(model._meta.pk.column)))
    return tables


_SNAPSHOT_SQL: list[tuple[list[str], list[str]]] = []


def _snapshot_sql() -> tuple[list[str], list[str]]:
    """The statements that read the snapshot and the table each answer belongs to.

    PostgreSQL digests every table server-side in one statement (one round trip instead
    of one per table); SQLite, in process, returns the rows themselves.
    """
    if not _SNAPSHOT_SQL:
        tables = _snapshot_tables()
        names = [name for name, *_ in tables]
        if connection.vendor == "postgresql":
            digest = "(SELECT md5(string_agg(ROW({})::text, ',' ORDER BY {})) FROM {})"
            digests = ", ".join(digest.format(c, pk, t) for _, t, c, pk in tables)
            statements = [f"SELECT {digests}"]
        else:
            statements = [
                f"SELECT {columns} FROM {table} ORDER BY {pk}"  # noqa: S608
                for _, table, columns, pk in tables
            ]
        _SNAPSHOT_SQL.append((names, statements))
    return _SNAPSHOT_SQL[0]


def snapshot() -> dict[str, Any]:
    """Every domain row (or, on PostgreSQL, a digest of each table's rows), comparable."""
    names, statements = _snapshot_sql()
    with connection.cursor() as cursor:
        if len(statements) == 1:
            cursor.execute(statements[0])
            return dict(zip(names, cursor.fetchone(), strict=True))
        values = []
        for sql in statements:
            cursor.execute(sql)
            values.append(cursor.fetchall())
    return dict(zip(names, values, strict=True))


def changed_tables(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def audit_actions_since(last_id: int) -> Counter[str]:
    """Audit events recorded after ``last_id`` (refusal notes, ``authz.*``, not counted)."""
    return Counter(
        AuditEvent.objects.filter(pk__gt=last_id)
        .exclude(action__startswith="authz.")
        .values_list("action", flat=True)
    )


def last_audit_id() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


# --- What a successful request must record ---------------------------------------------
# (method, path template without /api/v1) → the audit actions one successful call records.
# Operations that move lines record one event per line (the response says how many);
# PATCHes that change nothing record nothing; reads and previews never record.
ONE_EVENT = {
    ("POST", "/sub-accounts"): "sub_account.create",
    ("PATCH", "/sub-accounts/{sub_account_id}"): "sub_account.update",
    ("POST", "/lines/{line_id}/assign"): "line.assign",
    ("POST", "/lines/{line_id}/move"): "line.move",
    ("POST", "/lines/{line_id}/disconnect"): "line.disconnect",
    ("POST", "/line-orders"): "line_order.create",
    ("POST", "/line-orders/{order_id}/cancel"): "line_order.cancel",
    ("POST", "/invoices/{invoice_id}/finalize"): "invoice.finalize",
    ("POST", "/discounts"): "discount.grant",
    ("POST", "/discounts/{discount_id}/remove"): "discount.remove",
    ("POST", "/credits"): "credit.grant",
    ("PATCH", "/billing/settings"): "partner.billing_update",
    ("PATCH", "/partner"): "partner.settings_update",
    ("PATCH", "/billing/resale"): "resale_price.set",
    ("POST", "/alert-rules"): "alert_rule.create",
    ("PATCH", "/alert-rules/{alert_rule_id}"): "alert_rule.update",
    ("DELETE", "/alert-rules/{alert_rule_id}"): "alert_rule.delete",
    ("POST", "/merge-requests"): "merge_request.create",
    ("POST", "/merge-requests/{merge_request_id}/approve"): "merge_request.approve",
    ("POST", "/merge-requests/{merge_request_id}/reject"): "merge_request.reject",
    ("POST", "/merge-requests/{merge_request_id}/cancel"): "merge_request.cancel",
    ("POST", "/deletion-requests"): "deletion_request.create",
    ("POST", "/deletion-requests/{deletion_request_id}/approve"): "deletion_request.approve",
    ("POST", "/deletion-requests/{deletion_request_id}/reject"): "deletion_request.reject",
    ("POST", "/deletion-requests/{deletion_request_id}/cancel"): "deletion_request.cancel",
    ("POST", "/deletion-requests/{deletion_request_id}/restore"): "deletion_request.restore",
    ("POST", "/webhook-endpoints"): "webhook_endpoint.create",
    ("PATCH", "/webhook-endpoints/{webhook_endpoint_id}"): "webhook_endpoint.update",
    ("DELETE", "/webhook-endpoints/{webhook_endpoint_id}"): "webhook_endpoint.delete",
    (
        "POST",
        "/webhook-endpoints/{webhook_endpoint_id}/rotate-secret",
    ): "webhook_endpoint.rotate_secret",
    ("POST", "/webhook-endpoints/{webhook_endpoint_id}/test"): "webhook_endpoint.test",
    ("POST", "/webhook-deliveries/{webhook_delivery_id}/retry"): "webhook_delivery.retry",
    ("POST", "/notifications/{notification_id}/read"): "notification.read",
    ("POST", "/notifications/read-all"): "notification.read_all",
}
# Successful writes that may legitimately change nothing (and then record nothing).
MAY_BE_NO_OP = {
    ("PATCH", "/sub-accounts/{sub_account_id}"),
    ("PATCH", "/billing/settings"),
    ("PATCH", "/partner"),
    ("PATCH", "/billing/resale"),
    ("POST", "/lines/move"),
    ("PATCH", "/alert-rules/{alert_rule_id}"),
    ("PATCH", "/webhook-endpoints/{webhook_endpoint_id}"),
    # Marking what is already read (the inbox's state, not a change).
    ("POST", "/notifications/{notification_id}/read"),
    ("POST", "/notifications/read-all"),
}
# Writes that record no audit event by design: a preview, and message ingestion
# (derived analytics data, logged, not audited).
NEVER_AUDITED = {("POST", "/merge-requests/preview"), ("POST", "/message-events")}


def expected_actions(key: tuple[str, str], body: Any, changed: list[str]) -> Counter[str]:
    """The audit actions a successful (2xx) write that changed state (the tables
    ``changed``) must have recorded."""
    if key in NEVER_AUDITED:
        return Counter()
    if key == ("PATCH", "/sub-accounts/{sub_account_id}"):
        # Its fields and its resale price (domain §8.1), each audited when it changed.
        return Counter(
            action
            for table, action in (
                ("partners.SubAccount", "sub_account.update"),
                ("billing.ResalePriceChange", "resale_price.set"),
            )
            if table in changed
        )
    if key == ("POST", "/lines/move"):
        return Counter({"line.move": body["moved"]}) if body["moved"] else Counter()
    expected = Counter({ONE_EVENT[key]: 1})
    if key == ("POST", "/line-orders") and body["fulfilled_count"]:
        expected.update({"line.activate": body["fulfilled_count"], "line_order.fulfil": 1})
    if (
        key == ("POST", "/deletion-requests/{deletion_request_id}/approve")
        and body["lines_disposed"]
    ):
        per_line = "line.move" if body["line_disposition"] == "move" else "line.disconnect"
        expected[per_line] += body["lines_disposed"]
    return expected
