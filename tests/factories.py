"""Factories that build valid objects through the services, so invariants hold."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from dataclasses import dataclass

from portal.accounts.models import ApiKey
from portal.accounts.services import api_key_create, user_create
from portal.billing.invoicing import invoice_issue
from portal.billing.models import Invoice
from portal.billing.periods import Cycle
from portal.core.clock import frozen_at
from portal.core.principal import Principal
from portal.lines.models import Line
from portal.lines.services import inventory_import, line_assign, line_order_create
from portal.partners.models import Partner, SubAccount
from portal.partners.services import partner_create, sub_account_create

SYSTEM = Principal.system("tests")
_numbers = itertools.count(1000)
_partners = itertools.count(1)


def fresh_numbers(count: int, area_code: str = "415") -> list[str]:
    """Distinct valid North American numbers, never repeated within a test run."""
    return [f"+1{area_code}555{next(_numbers) % 10000:04d}" for _ in range(count)]


@dataclass
class Tenant:
    """A partner with one key per role, ready for API calls."""

    partner: Partner
    keys: dict[str, str]

    def principal(self, role: str = "admin") -> Principal:
        from portal.accounts.services import api_key_authenticate

        key = api_key_authenticate(self.keys[role])
        assert key is not None
        return Principal.for_api_key(key)


def make_partner(name: str | None = None, **kwargs: object) -> Partner:
    return partner_create(principal=SYSTEM, name=name or f"Partner {next(_partners)}", **kwargs)


def make_tenant(name: str | None = None, **kwargs: object) -> Tenant:
    partner = make_partner(name, **kwargs)
    keys = {
        role: api_key_create(
            principal=SYSTEM.acting_for(partner.pk), name=f"{role} key", role=role
        ).raw
        for role in ("admin", "manager", "billing", "viewer")
    }
    return Tenant(partner=partner, keys=keys)


def make_staff_key() -> str:
    return api_key_create(principal=SYSTEM, name="staff key", staff=True).raw


def make_sub_account(partner: Partner, name: str | None = None, **details: str) -> SubAccount:
    return sub_account_create(
        principal=SYSTEM.acting_for(partner.pk),
        name=name or f"Client {next(_partners)} – Sales",
        **details,
    )


def make_lines(partner: Partner, count: int, area_code: str = "415") -> list[Line]:
    """Active lines in the partner's Available pool, delivered through an order."""
    numbers = fresh_numbers(count, area_code)
    inventory_import(principal=SYSTEM, csv_text="number\n" + "\n".join(numbers) + "\n")
    order = line_order_create(principal=SYSTEM.acting_for(partner.pk), quantity=count)
    return list(Line.objects.filter(order=order).order_by("pk"))


def make_client_line(sub_account: SubAccount, **details: object) -> Line:
    """A new line assigned to ``sub_account`` with a client's details (label, user, limit)."""
    line = make_lines(sub_account.partner, 1)[0]
    details = {
        "label": "Front desk",
        "user_name": "Ann Client",
        "user_email": "ann@client.example",
        "daily_limit": 80,
        **details,
    }
    line_assign(principal=SYSTEM, line_id=line.pk, sub_account_id=sub_account.pk, **details)
    return Line.objects.get(pk=line.pk)


def make_user(partner: Partner, email: str, role: str, password: str = "demo-pass-123"):
    return user_create(
        principal=SYSTEM.acting_for(partner.pk), email=email, role=role, password=password
    )


# A public address written as one: an endpoint URL that passes the address rule without
# asking DNS (tests that deliver use a receiver on 127.0.0.1 and allow private addresses).
PUBLIC_WEBHOOK_URL = "https://93.184.215.14/webhooks"


def make_webhook_endpoint(
    partner: Partner, url: str = PUBLIC_WEBHOOK_URL, events: tuple[str, ...] = ("*",)
):
    """An enabled webhook endpoint of ``partner`` (its secret is not kept)."""
    from portal.webhooks.services import webhook_endpoint_create

    return webhook_endpoint_create(
        principal=SYSTEM.acting_for(partner.pk), url=url, events=list(events)
    ).endpoint


# --- State snapshots and invariant checks ---------------------------------------------
# Tests compare snapshots to prove that a refused request changed nothing, and call
# ``assert_line_invariants`` after operations to prove the §2 invariants still hold.


def at(text: str) -> dt.datetime:
    """An instant from ISO text ("2026-06-16T12:00:00+00:00"), UTC when it names no offset
    ("2026-06-16 12:00")."""
    instant = dt.datetime.fromisoformat(text)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=dt.UTC)


def issue_invoice(partner: Partner, year: int, month: int) -> Invoice:
    """Issue the invoice of ``year-month`` as the billing run would, at the instant its
    cycle starts (in the partner's timezone as it is now)."""
    partner.refresh_from_db()
    cycle = Cycle(year, month, partner.timezone)
    with frozen_at(cycle.start):
        return invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)


def db_snapshot() -> dict[str, object]:
    """Everything a request could change in the domain tables, as comparable values.

    API keys' ``last_used_at`` and idempotency records are bookkeeping, not domain
    state, and are left out.
    """
    from portal.alerts.models import Alert, AlertRule
    from portal.audit.models import AuditEvent
    from portal.billing.models import ResalePriceChange
    from portal.lines.models import AssignmentPeriod, InventoryNumber, LineOrder
    from portal.notifications.models import Notification
    from portal.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

    return {
        "partners": list(Partner.objects.order_by("pk").values_list()),
        "sub_accounts": list(
            SubAccount.objects.order_by("pk").values_list(
                "pk",
                "partner_id",
                "name",
                "kind",
                "status",
                "line_count",
                "contact_name",
                "contact_email",
                "contact_phone",
                "internal_reference",
                "notes",
                "lock_reason",
                "merged_into_id",
            )
        ),
        "lines": list(Line.objects.order_by("pk").values_list()),
        "periods": list(AssignmentPeriod.objects.order_by("pk").values_list()),
        "orders": list(
            LineOrder.objects.order_by("pk").values_list(
                "pk", "partner_id", "quantity", "area_code", "status", "fulfilled_count"
            )
        ),
        "inventory": list(InventoryNumber.objects.order_by("pk").values_list()),
        "alert_rules": list(AlertRule.objects.order_by("pk").values_list()),
        "alerts": list(Alert.objects.order_by("pk").values_list()),
        "audit_events": AuditEvent.objects.count(),
        "resale_prices": list(
            ResalePriceChange.objects.order_by("pk").values_list(
                "pk", "partner_id", "sub_account_id", "effective_month", "price"
            )
        ),
        "api_keys": list(
            ApiKey.objects.order_by("pk").values_list("pk", "name", "role", "revoked_at")
        ),
        "webhook_endpoints": list(WebhookEndpoint.objects.order_by("pk").values_list()),
        "webhook_events": WebhookEvent.objects.count(),
        "notifications": list(Notification.objects.order_by("pk").values_list("pk", "read_at")),
        "webhook_deliveries": list(
            WebhookDelivery.objects.order_by("pk").values_list(
                "pk", "status", "attempts", "next_attempt_at", "claimed_by"
            )
        ),
    }


def assert_line_invariants(partner_ids: list[int] | None = None) -> None:
    """domain §2 for lines: counts match, one open period per active line, periods tile."""
    from portal.lines.models import AssignmentPeriod, LineStatus

    subs = SubAccount.objects.all()
    lines = Line.objects.all()
    if partner_ids is not None:
        subs = subs.filter(partner_id__in=partner_ids)
        lines = lines.filter(partner_id__in=partner_ids)
    actual: dict[int, int] = {}
    for line in lines.filter(status=LineStatus.ACTIVE):
        actual[line.sub_account_id] = actual.get(line.sub_account_id, 0) + 1
    for sa in subs:
        assert sa.line_count == actual.get(sa.pk, 0), (
            f"{sa.name}: line_count {sa.line_count} but {actual.get(sa.pk, 0)} active lines"
        )
    pools = Counter(subs.filter(kind="available").values_list("partner_id", flat=True))
    for partner_id in {sa.partner_id for sa in subs}:
        assert pools.get(partner_id) == 1, f"partner {partner_id} has {pools.get(partner_id)} pools"
    for line in lines:
        periods = list(AssignmentPeriod.objects.filter(line=line).order_by("start", "pk"))
        assert periods, f"line {line.number} has no assignment period"
        assert periods[0].start == line.activated_at
        for earlier, later in itertools.pairwise(periods):
            assert earlier.end is not None, f"line {line.number}: an open period is not the last"
            assert earlier.end == later.start, f"line {line.number}: periods do not tile"
        for period in periods:
            assert period.partner_id == line.partner_id
        last = periods[-1]
        if line.status == LineStatus.ACTIVE:
            assert line.sub_account_id is not None
            assert last.end is None, f"active line {line.number} has no open period"
            assert last.sub_account_id == line.sub_account_id
            assert SubAccount.objects.get(pk=line.sub_account_id).partner_id == line.partner_id
        else:
            assert line.sub_account_id is None
            assert last.end is not None and last.end == line.disconnected_at


def import_numbers(*numbers: str, area_codes: dict[str, str] | None = None):
    """Add numbers to the provider's inventory as staff would (fulfils waiting orders)."""
    area_codes = area_codes or {}
    rows = [f"{n},{area_codes.get(n, '')}" for n in numbers]
    return inventory_import(principal=SYSTEM, csv_text="number,area_code\n" + "\n".join(rows))


def force_state(sub_account: SubAccount, **fields: object) -> SubAccount:
    """Set workflow-owned fields (status, lock_reason, merged_into) directly.

    Merge and deletion workflows come later; until then tests simulate their
    effects on a sub-account this way.
    """
    SubAccount.objects.filter(pk=sub_account.pk).update(**fields)
    sub_account.refresh_from_db()
    return sub_account
