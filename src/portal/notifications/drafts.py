"""What each audited change says in an inbox: its kind, title, link and who it is for.

Takes what the audit log recorded (``portal.core.events.Recorded``) and reads the few
rows the words need (the alerts with their sub-accounts, the request, the order) in one
query per call; the inbox (``notifications.inbox``) finds the people and writes the rows.
Audit codes not listed here notify nobody. A partner's client gets its own words about
its statements (``client_statements_draft``), one item per client the inbox finds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.urls import reverse

from portal.core.events import Recorded
from portal.core.tenancy import db_id
from portal.notifications.models import CLIENT_OBJECT_TYPE, Kind

TITLE_MAX = 300


@dataclass(frozen=True, slots=True)
class Draft:
    """One notification before its recipients are known.

    ``requester``: for a kind addressed to one person, who asked (``("user", id)``,
    ``("email", address)`` for a line order, which keeps its requester's label, or
    ``("api_key", None)``); None for a partner-wide kind (the roles in
    ``policies.RECIPIENT_ROLES``). ``emailed``: whether an emailed kind (alerts) is
    emailed too; not when a person resolved the alerts by changing, pausing or deleting
    their rule (the inbox says so; the email is for the condition itself)."""

    kind: str
    title: str
    url: str
    object_type: str
    object_id: str
    requester: tuple[str, Any] | None = None
    emailed: bool = True


def _clip(text: str) -> str:
    return text if len(text) <= TITLE_MAX else text[: TITLE_MAX - 1] + "…"


# A rule firing (or resolving) on more sub-accounts than this at once is one notification
# naming the first few and how many more, not one per sub-account.
NAMED_ALERTS = 3


def _alerts(recorded: Recorded) -> list[Draft]:
    """One draft per rule of the batch: the alert itself when the rule fired (or resolved)
    on one sub-account, else the rule's condition "on N sub-accounts" naming the first
    few. Built from the audit events' own data (the rule's figures as they fired) and one
    query for the few names, so a rule firing on 10,000 sub-accounts costs what one does."""
    from portal.alerts.models import ResolvedBecause
    from portal.alerts.wording import condition_text, value_text
    from portal.partners.models import SubAccount

    triggered = recorded.action == "alert.trigger"
    kind = Kind.ALERT_TRIGGERED if triggered else Kind.ALERT_RESOLVED
    # Resolved by a person, through the rule, rather than by the figures: not emailed.
    by_a_person = {
        ResolvedBecause.RULE_CHANGED,
        ResolvedBecause.RULE_DISABLED,
        ResolvedBecause.RULE_DELETED,
    }
    by_rule: dict[Any, list[Any]] = {}
    for change in sorted(recorded.changes, key=lambda c: db_id(c.object_id) or 0):
        by_rule.setdefault((change.data or {}).get("rule_id"), []).append(change)
    wanted = {
        c.sub_account_id
        for changes in by_rule.values()
        for c in changes[:NAMED_ALERTS]
        if c.sub_account_id is not None
    }
    names = (
        dict(
            SubAccount.objects.filter(
                partner_id=recorded.partner_id, pk__in=sorted(wanted)
            ).values_list("pk", "name")
        )
        if wanted
        else {}
    )
    url = reverse("alerts:alert_list")
    drafts = []
    for rule_id, changes in by_rule.items():
        data = changes[0].data or {}
        metric = data.get("metric", "")
        condition = condition_text(
            metric,
            data.get("comparator", ""),
            Decimal(str(data.get("threshold") or 0)),
            int(data.get("window_days") or 1),
        )
        where = [
            names.get(c.sub_account_id, "a sub-account") if c.sub_account_id else "Partner-wide"
            for c in changes[:NAMED_ALERTS]
        ]
        if len(changes) > 1:
            more = len(changes) - len(where)
            listed = ", ".join(where) + (f" and {more:,} more" if more else "")
            head = "Alert" if triggered else "Alert resolved"
            title = f"{head}: {condition} on {len(changes):,} sub-accounts ({listed})"
            object_type, object_id = "alert_rule", str(rule_id)
        elif triggered:
            value = data.get("value")
            now = value_text(metric, Decimal(str(value)) if value is not None else None)
            title = f"Alert: {where[0]}: {condition} (now {now})"
            object_type, object_id = "alert", str(changes[0].object_id)
        else:
            because = data.get("because")
            words = ResolvedBecause(because).label if because else ""
            title = f"Alert resolved: {where[0]}: {condition}" + (f" ({words})" if words else "")
            object_type, object_id = "alert", str(changes[0].object_id)
        by_person = not triggered and data.get("because") in by_a_person
        drafts.append(Draft(kind, _clip(title), url, object_type, object_id, emailed=not by_person))
    return drafts


_REQUEST_WORDS = {
    "approve": "was approved",
    "reject": "was rejected",
    "complete": "is complete",
    "purge": "is complete",
}


def _requests(recorded: Recorded) -> list[Draft]:
    from portal.workflows.models import DeletionRequest, MergeRequest

    noun, verb = recorded.action.split(".")
    merge = noun == "merge_request"
    model = MergeRequest if merge else DeletionRequest
    ids = [key for c in recorded.changes if (key := db_id(c.object_id)) is not None]
    rows = model.objects.filter(partner_id=recorded.partner_id, pk__in=ids).select_related(
        "target" if merge else "sub_account"
    )
    kind = {
        ("merge_request", "approve"): Kind.MERGE_APPROVED,
        ("merge_request", "reject"): Kind.MERGE_REJECTED,
        ("merge_request", "complete"): Kind.MERGE_COMPLETED,
        ("deletion_request", "approve"): Kind.DELETION_APPROVED,
        ("deletion_request", "reject"): Kind.DELETION_REJECTED,
        ("deletion_request", "purge"): Kind.DELETION_PURGED,
    }[(noun, verb)]
    drafts = []
    for r in sorted(rows, key=lambda r: r.pk):
        if merge:
            what = f"Your request #{r.pk} to merge into {r.target.name}"
            url = reverse("workflows:merge_detail", args=[r.pk])
        else:
            what = f"Your request #{r.pk} to delete {r.sub_account.name}"
            url = reverse("workflows:deletion_detail", args=[r.pk])
        title = f"{what} {_REQUEST_WORDS[verb]}"
        requester = (r.requested_by_type, r.requested_by_id)
        drafts.append(Draft(kind, _clip(title), url, noun, str(r.pk), requester))
    return drafts


def _order_fulfilled(recorded: Recorded) -> list[Draft]:
    from portal.lines.models import LineOrder, LineOrderStatus

    ids = [key for c in recorded.changes if (key := db_id(c.object_id)) is not None]
    orders = LineOrder.objects.filter(partner_id=recorded.partner_id, pk__in=ids)
    delivered = {
        str(c.object_id): len((c.data or {}).get("line_ids") or []) for c in recorded.changes
    }
    url = reverse("lines:line_orders")
    drafts = []
    for o in sorted(orders, key=lambda o: o.pk):
        count = delivered.get(str(o.pk), 0)
        lines = f"{count} line{'s' if count != 1 else ''}"
        if o.status == LineOrderStatus.FULFILLED:
            title = f"Your line request #{o.pk} is fulfilled: {lines} delivered to Available"
        else:
            title = (
                f"Your line request #{o.pk}: {lines} delivered to Available "
                f"({o.fulfilled_count} of {o.quantity})"
            )
        who = o.requested_by
        requester = ("api_key", None) if who.startswith("key:") else ("email", who)
        drafts.append(
            Draft(Kind.LINE_ORDER_FULFILLED, _clip(title), url, "line_order", str(o.pk), requester)
        )
    return drafts


def _invoices(recorded: Recorded) -> list[Draft]:
    from portal.billing.models import Statement

    drafts = []
    for c in recorded.changes:
        data = c.data or {}
        invoice_id = db_id(c.object_id)
        month = str(data.get("period_month") or "")
        period = _month_words(month)
        drafts.append(
            Draft(
                Kind.INVOICE_ISSUED,
                _clip(f"Invoice {data.get('number', '')} issued for {period}"),
                reverse("billing:invoice_detail", args=[invoice_id]) if invoice_id else "",
                "invoice",
                str(c.object_id),
            )
        )
        statements = Statement.objects.filter(
            partner_id=recorded.partner_id, invoice_id=invoice_id
        ).count()
        if statements:
            noun = "statement" if statements == 1 else "statements"
            drafts.append(
                Draft(
                    Kind.STATEMENT_ISSUED,
                    _clip(f"{statements} client {noun} issued for {period}"),
                    reverse("billing:statement_list") + (f"?period={month}" if month else ""),
                    "invoice",
                    str(c.object_id),
                )
            )
    return drafts


def client_statements_draft(invoice_id: int, statements: list[tuple[int, str, dt.date]]) -> Draft:
    """What a partner's client reads when an invoice issues statements of its sub-accounts
    (``statements``: their ids, names and period, by name): one item for them all,
    linking to the statement when there is one and to the period's statements (which a
    client reads narrowed to its own) otherwise. Names and a month only: never an
    amount, the invoice or another sub-account."""
    period = statements[0][2]
    words = f"{period:%B %Y}"
    if len(statements) == 1:
        statement_id, name, _ = statements[0]
        title = f"Your statement for {words} is issued: {name}"
        url = reverse("billing:statement_detail", args=[statement_id])
    else:
        title = f"Your {len(statements)} statements for {words} are issued"
        url = reverse("billing:statement_list") + f"?period={period:%Y-%m}"
    return Draft(Kind.STATEMENT_ISSUED, _clip(title), url, CLIENT_OBJECT_TYPE, str(invoice_id))


def _month_words(month: str) -> str:
    """ "2026-03" as "March 2026" (as given when it is not a month)."""
    try:
        return dt.date.fromisoformat(f"{month}-01").strftime("%B %Y")
    except ValueError:
        return month


BUILDERS: dict[str, Callable[[Recorded], list[Draft]]] = {
    "alert.trigger": _alerts,
    "alert.resolve": _alerts,
    "line_order.fulfil": _order_fulfilled,
    "invoice.issue": _invoices,
    **{
        f"{noun}.{verb}": _requests
        for noun in ("merge_request", "deletion_request")
        for verb in ("approve", "reject")
    },
    "merge_request.complete": _requests,
    "deletion_request.purge": _requests,
}


def drafts_of(recorded: Recorded) -> list[Draft]:
    """The notifications an audited change makes (none for most)."""
    build = BUILDERS.get(recorded.action)
    return build(recorded) if build and recorded.partner_id is not None else []
