"""Demo data: two partners with three months of history, built through the services.

Everything goes through the same service functions as the portal, each call with
the clock pinned (``clock.frozen_at``) to a moment in the past, in increasing
order, so the history is what real use would have left: lines delivered by
orders about 88 days ago, assigned, moved, a few disconnected; invoices issued at
each month's start and finalized three days later, carrying the discounts and
credits staff granted and the prorations of the moves, each with the client statements
of the sub-accounts the partner set resale prices for; a merge completed and a
deletion still in its retention; one order waiting for inventory; and message
traffic over the whole time. A fixed random seed makes every run identical.

The passwords are for the demo only.
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from django.db import transaction

from portal.accounts.models import User
from portal.accounts.services import api_key_create, staff_create, user_create
from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.services import alert_rule_create
from portal.analytics.rollups import analytics_days_close
from portal.analytics.simulator import TrafficModel, simulate
from portal.billing.invoicing import invoices_finalize_due, invoices_issue_due
from portal.billing.models import Invoice, Statement
from portal.billing.periods import cycle_containing
from portal.billing.resale import resale_default_set, sub_account_resale_price_set
from portal.billing.terms import credit_grant, discount_grant
from portal.core import clock
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.lines.models import Line
from portal.lines.services import (
    inventory_import,
    line_assign,
    line_disconnect,
    line_move,
    line_move_bulk,
    line_order_create,
)
from portal.partners.models import Partner, SubAccount
from portal.partners.selectors import available_pool
from portal.partners.services import partner_create, sub_account_create
from portal.workflows.models import LineDisposition
from portal.workflows.services.deletions import deletion_request_approve, deletion_request_create
from portal.workflows.services.merges import (
    merge_request_approve,
    merge_request_create,
    merge_request_run,
)

T = TypeVar("T")

DEMO_PASSWORD = "demo-pass-123"  # noqa: S105 - demo only, printed by `portal demo`
STAFF_EMAIL = "staff@provider.example"
DEMO_PARTNER = "Demo Reseller"
OTHER_PARTNER = "Northwind Messaging"
RANDOM_SEED = 20240601

DEMO_USERS = (
    ("admin@demo.example", Role.ADMIN, "Alex Rivera"),
    ("manager@demo.example", Role.MANAGER, "Morgan Lee"),
    ("viewer@demo.example", Role.VIEWER, "Vic Chen"),
    ("billing@demo.example", Role.BILLING, "Blair Patel"),
)
NORTHWIND_USERS = (("admin@northwind.example", Role.ADMIN, "Nia Okafor"),)
# Demo Reseller's own customer (domain §8.2): Acme Dental's contact, granted its two
# accounts with the reseller (indexes in CLIENTS), both with statements from the start.
DEMO_CLIENT = ("client@demo.example", "Priya Shah", (0, 1))

# name, contact name, contact email, contact phone, internal reference, share of lines
CLIENTS = (
    ("Acme Dental – Appointment Reminders", "Priya Shah", "priya@acmedental.example", 40),
    ("Brightside Realty – Lead Follow-up", "Marcus Bell", "marcus@brightside.example", 35),
    ("Cedar Auto Group – Service Reminders", "Elena Ruiz", "elena@cedarauto.example", 30),
    ("Harbor Fitness – Membership Renewals", "Jamal Carter", "jamal@harborfit.example", 25),
    ("Lakeside Pediatrics – Appointment Reminders", "Sofia Novak", "sofia@lakeside.example", 22),
    ("Metro Plumbing – Dispatch Updates", "Owen Brooks", "owen@metroplumb.example", 20),
    ("Northside Law – Client Intake", "Hannah Kim", "hannah@northsidelaw.example", 18),
    ("Pinnacle Insurance – Policy Renewals", "Luis Ortega", "luis@pinnacle.example", 18),
    ("Riverview Dental – Recall Campaign", "Grace Liu", "grace@riverview.example", 16),
    ("Summit Roofing – Sales Campaign", "Tom Becker", "tom@summitroof.example", 14),
    ("Urban Eats – Order Notifications", "Aisha Rahman", "aisha@urbaneats.example", 12),
    ("Willow Salon – Booking Reminders", "Chloe Martin", "chloe@willowsalon.example", 10),
)
NORTHWIND_CLIENTS = (
    ("Harbour Bikes – Delivery Updates", "Oliver Hughes", "oliver@harbourbikes.example", 5),
    ("Kestrel Clinic – Patient Reminders", "Amelia Price", "amelia@kestrel.example", 3),
)
# area code -> lines ordered; 300 in all
AREA_CODES = {"212": 100, "646": 80, "917": 70, "718": 50}
WAITING_AREA_CODE = "305"  # no stock: its order waits for the next import
INITIAL_ASSIGNED = 260
LATE_ASSIGNS = 6
MOVES = 48
BACK_TO_AVAILABLE_EVERY = 8  # every 8th move returns a line to Available
BULK_MOVE_SIZE = 8
DISCONNECTS = 4

# What Demo Reseller charges its clients (domain §8.1): its billing person sets prices for
# most clients as soon as they exist (indexes in CLIENTS), so every invoice the demo issues
# carries their statements; a default for the others follows on day RESALE_DEFAULT_DAY
# and, like every change, applies from the next cycle.
RESALE_PRICES = {
    0: "79.00",
    1: "72.00",
    2: "69.00",
    3: "75.00",
    4: "79.00",
    5: "65.00",
    6: "85.00",
    7: "72.00",
}
RESALE_DEFAULT, RESALE_DEFAULT_DAY = "68.00", 50

LABELS = ("Front desk", "Reminders", "Sales", "Support", "Dispatch", "Scheduling", "Outreach")
FIRST_NAMES = ("Ava", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Ivy", "Jon", "Kai", "Lea", "Max")
LAST_NAMES = ("Adams", "Baker", "Cole", "Diaz", "Evans", "Frost", "Gray", "Hale", "Ives", "Jones")


@dataclass
class DemoResult:
    partner: Partner
    other_partner: Partner
    api_key: str
    logins: list[tuple[str, str]] = field(default_factory=list)  # (email, role)


def demo_logins() -> list[tuple[str, str]]:
    """(email, role) of every demo person, staff last."""
    people = [(email, role.value) for email, role, _ in (*DEMO_USERS, *NORTHWIND_USERS)]
    return [*people, (DEMO_CLIENT[0], Role.CLIENT.value), (STAFF_EMAIL, "staff")]


def demo_is_seeded() -> bool:
    return User.objects.filter(email=STAFF_EMAIL).exists()


# How long the demo partner's history runs: within the raw events' retention (90 days
# by default), so the traffic of every day of it can still be ingested.
HISTORY_DAYS = 88
CHANGES_FROM_DAY, CHANGES_TO_DAY = 8, 70  # the moves, late assignments and disconnects
MERGE_DAY, DELETION_DAY, WAITING_ORDER_DAY = 74, 80, 85
MERGED_AWAY, MERGE_TARGET = 8, 0  # Riverview Dental into Acme Dental (indexes in CLIENTS)
DELETED = 11  # Willow Salon: its lines back to Available, in retention for 30 days


class _Timeline:
    """Hands out strictly increasing moments, so each change happens after the last.

    Checkpoints (the provider's billing runs) fire at their own moment when the
    timeline passes it, between the changes before and after.
    """

    def __init__(self, start: dt.datetime) -> None:
        self.at = start
        self.checkpoints: list[tuple[dt.datetime, Callable[[], object]]] = []

    def every_billing_run(self, tz: str, until: dt.datetime) -> None:
        """The worker's invoice run at each cycle's start and its finalizing 3 days later."""
        staff = Principal.system("job:issue_due_invoices")
        finalizer = Principal.system("job:finalize_due_invoices")
        cycle = cycle_containing(self.at, tz).next()
        while cycle.start < until:
            issue_at = cycle.start + dt.timedelta(minutes=5)
            final_at = cycle.start + dt.timedelta(days=3, hours=1)
            self.checkpoints.append(
                (issue_at, lambda at=issue_at: invoices_issue_due(principal=staff, now=at))
            )
            if final_at < until:
                self.checkpoints.append(
                    (
                        final_at,
                        lambda at=final_at: invoices_finalize_due(principal=finalizer, now=at),
                    )
                )
            cycle = cycle.next()
        self.checkpoints.sort(key=lambda c: c[0])

    def next(self, step: dt.timedelta) -> dt.datetime:
        target = self.at + step
        while self.checkpoints and self.checkpoints[0][0] < target:
            moment, call = self.checkpoints.pop(0)
            self.at = max(moment, self.at + dt.timedelta(seconds=1))
            with clock.frozen_at(self.at):
                call()
        self.at = max(target, self.at + dt.timedelta(seconds=1))
        return self.at

    def at_moment(self, moment: dt.datetime, call: Callable[..., object], **kwargs: Any) -> None:
        """Schedule ``call`` (a staff decision, say) at ``moment`` among the changes."""
        self.checkpoints.append((moment, lambda: call(**kwargs)))
        self.checkpoints.sort(key=lambda c: c[0])

    def until(self, moment: dt.datetime) -> None:
        """Run the checkpoints due before ``moment`` and stand there."""
        if moment > self.at:
            self.next(moment - self.at)

    def run(self, step: dt.timedelta, call: Callable[..., T], **kwargs: Any) -> T:
        with clock.frozen_at(self.next(step)):
            return call(**kwargs)


def _csv(numbers: list[str]) -> str:
    return "number\n" + "\n".join(numbers) + "\n"


def _people(
    partner: Partner, system: Principal, users: tuple[tuple[str, Role, str], ...]
) -> dict[Role, Principal]:
    principals = {}
    for email, role, full_name in users:
        user = user_create(
            principal=system.acting_for(partner.pk),
            email=email,
            role=role,
            password=DEMO_PASSWORD,
            full_name=full_name,
        )
        principals[role] = Principal.for_user(user)
    return principals


def _clients(
    actor: Principal,
    clients: tuple[tuple[str, str, str, int], ...],
    first: int = 1,
) -> list[tuple[SubAccount, int]]:
    """Sub-accounts made by ``actor`` in its partner, with their shares of the lines, each
    with its own phone and internal reference (numbered from ``first``: the demo creates
    its clients one call at a time)."""
    made = []
    for index, (name, contact, email, share) in enumerate(clients, start=first):
        sub_account = sub_account_create(
            principal=actor,
            name=name,
            contact_name=contact,
            contact_email=email,
            contact_phone=f"+1312555{2000 + index:04d}",
            internal_reference=f"CL-{1000 + index}",
        )
        made.append((sub_account, share))
    return made


def _details(rng: random.Random, sub_account: SubAccount, n: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    domain = sub_account.contact_email.split("@")[1]
    return {
        "label": f"{rng.choice(LABELS)} {n}",
        "user_name": f"{first} {last}",
        "user_email": f"{first}.{last}@{domain}".lower(),
        "daily_limit": rng.choice((50, 50, 50, 75, 100, 200)),
    }


def _weighted(rng: random.Random, clients: list[tuple[SubAccount, int]], count: int) -> list[int]:
    """``count`` sub-account ids drawn in proportion to their shares."""
    ids = [sa.pk for sa, _ in clients]
    weights = [share for _, share in clients]
    return rng.choices(ids, weights=weights, k=count)


def _seed_demo_partner(
    *, system: Principal, staff: Principal, rng: random.Random, now: dt.datetime, out: TextIO
) -> tuple[Partner, str]:
    start = now - dt.timedelta(days=HISTORY_DAYS)
    time = _Timeline(start)
    with clock.frozen_at(time.at):
        partner = partner_create(
            principal=system,
            name=DEMO_PARTNER,
            timezone="America/New_York",
            currency="USD",
            line_price="50.00",
        )
        people = _people(partner, system, DEMO_USERS)
        api_key = api_key_create(
            principal=people[Role.ADMIN], name="Demo API key", role=Role.ADMIN
        ).raw
    admin, manager = people[Role.ADMIN], people[Role.MANAGER]
    time.every_billing_run(partner.timezone, until=now)

    # Inventory arrives, the partner orders lines: about 88 days ago.
    numbers = [f"+1{code}555{1000 + i:04d}" for code, n in AREA_CODES.items() for i in range(n)]
    time.run(dt.timedelta(hours=1), inventory_import, principal=system, csv_text=_csv(numbers))
    for code, quantity in AREA_CODES.items():
        time.run(
            dt.timedelta(minutes=40),
            line_order_create,
            principal=admin,
            quantity=quantity,
            area_code=code,
        )
    out.write(f"  {len(numbers)} lines delivered to {partner.name}\n")

    clients = [
        time.run(dt.timedelta(minutes=15), _clients, actor=admin, clients=(c,), first=n)[0]
        for n, c in enumerate(CLIENTS, start=1)
    ]
    email, full_name, granted = DEMO_CLIENT
    time.run(
        dt.timedelta(minutes=5),
        user_create,
        principal=admin,
        email=email,
        role=Role.CLIENT,
        password=DEMO_PASSWORD,
        full_name=full_name,
        sub_account_ids=[clients[i][0].pk for i in granted],
    )
    by_id = {sa.pk: sa for sa, _ in clients}
    available_id = available_pool(partner.pk).pk
    _schedule_adjustments(time, staff, partner, [sa for sa, _ in clients], start)
    _resale_prices(time, people[Role.BILLING], [sa for sa, _ in clients], start)
    lines = list(Line.objects.filter(partner=partner).order_by("pk").values_list("pk", flat=True))
    rng.shuffle(lines)
    where: dict[int, int | None] = dict.fromkeys(lines)  # line -> standard sub-account or None
    targets = _weighted(rng, clients, INITIAL_ASSIGNED + LATE_ASSIGNS)

    # Most lines are put to work during the following week.
    step = dt.timedelta(days=7) / INITIAL_ASSIGNED
    for n, (line_id, target) in enumerate(zip(lines, targets[:INITIAL_ASSIGNED], strict=False)):
        time.run(
            step,
            line_assign,
            principal=manager,
            line_id=line_id,
            sub_account_id=target,
            **_details(rng, by_id[target], n + 1),
        )
        where[line_id] = target
    out.write(f"  {INITIAL_ASSIGNED} lines assigned to {len(clients)} sub-accounts\n")

    # Then two months of changes: moves, one bulk move, late assignments, disconnects.
    events = ["move"] * MOVES + ["assign"] * LATE_ASSIGNS + ["disconnect"] * DISCONNECTS + ["bulk"]
    rng.shuffle(events)
    time.until(start + dt.timedelta(days=CHANGES_FROM_DAY))
    step = dt.timedelta(days=CHANGES_TO_DAY - CHANGES_FROM_DAY) / (len(events) + 1)
    late_targets = iter(targets[INITIAL_ASSIGNED:])
    moves, late_left = 0, LATE_ASSIGNS
    for event in events:
        held = sorted(line for line, sa in where.items() if sa is not None)
        if event == "move":
            moves += 1
            line_id = rng.choice(held)
            if moves % BACK_TO_AVAILABLE_EVERY == 0:
                target_id, new_place = available_id, None
            else:
                new_place = rng.choice([sa for sa in by_id if sa != where[line_id]])
                target_id = new_place
            actor = manager if moves % 3 else admin
            time.run(step, line_move, principal=actor, line_id=line_id, sub_account_id=target_id)
            where[line_id] = new_place
        elif event == "assign":
            line_id = min(line for line, sa in where.items() if sa is None)
            target = next(late_targets)
            late_left -= 1
            time.run(
                step,
                line_assign,
                principal=manager,
                line_id=line_id,
                sub_account_id=target,
                **_details(rng, by_id[target], INITIAL_ASSIGNED + LATE_ASSIGNS - late_left),
            )
            where[line_id] = target
        elif event == "disconnect":
            line_id = rng.choice(held)
            time.run(step, line_disconnect, principal=admin, line_id=line_id)
            del where[line_id]
        else:  # one client hands a batch of lines to another
            source, target = clients[3][0].pk, clients[9][0].pk
            batch = [line for line in held if where[line] == source][:BULK_MOVE_SIZE]
            time.run(
                step,
                line_move_bulk,
                principal=admin,
                line_ids=batch,
                sub_account_id=target,
            )
            where.update(dict.fromkeys(batch, target))
    out.write(
        f"  {MOVES} moves, 1 bulk move of {BULK_MOVE_SIZE} lines, "
        f"{DISCONNECTS} disconnects over the past weeks\n"
    )

    _merge_and_delete(time, admin, staff, clients, available_id, start, out)

    # A few days ago: an order for an area code the provider has no numbers for yet.
    time.until(start + dt.timedelta(days=WAITING_ORDER_DAY))
    time.run(
        dt.timedelta(hours=1),
        line_order_create,
        principal=admin,
        quantity=5,
        area_code=WAITING_AREA_CODE,
    )
    out.write(f"  1 order for {WAITING_AREA_CODE} numbers waiting for inventory\n")
    time.until(now - dt.timedelta(minutes=1))  # the billing runs up to today
    invoices = Invoice.objects.filter(partner=partner).count()
    out.write(f"  {invoices} invoices issued, with discounts, credits and prorations\n")
    statements = Statement.objects.filter(partner=partner)
    clients_billed = statements.values("sub_account_id").distinct().count()
    out.write(f"  {statements.count()} client statements issued to {clients_billed} sub-accounts\n")
    return partner, api_key


def _schedule_adjustments(
    time: _Timeline, staff: Principal, partner: Partner, subs: list[SubAccount], start: dt.datetime
) -> None:
    """Staff's commercial decisions: two discounts and two credits, at their days."""
    staff = staff.acting_for(partner.pk)
    day = lambda n: start + dt.timedelta(days=n, hours=15)  # noqa: E731 - a local shorthand
    time.at_moment(
        day(12),
        discount_grant,
        principal=staff,
        kind="percent",
        value="5",
        name="Loyalty discount",
        cycles=3,
    )
    time.at_moment(
        day(20),
        discount_grant,
        principal=staff,
        kind="amount",
        value="25.00",
        name="Launch support",
        sub_account_id=subs[MERGE_TARGET].pk,
    )
    outage = day(38).astimezone(zoneinfo.ZoneInfo(partner.timezone)).strftime("%-d %B")
    time.at_moment(
        day(40),
        credit_grant,
        principal=staff,
        amount="120.00",
        reason=f"Carrier outage on {outage}: two days of service",
        sub_account_id=subs[2].pk,
    )
    time.at_moment(
        day(55),
        credit_grant,
        principal=staff,
        amount="40.00",
        reason="Goodwill for a delayed number delivery",
    )


def _resale_prices(
    time: _Timeline, billing: Principal, subs: list[SubAccount], start: dt.datetime
) -> None:
    """The partner's own prices for its clients, set by its billing person through the
    services: most clients' now, a default for the rest on day RESALE_DEFAULT_DAY."""
    for index, price in RESALE_PRICES.items():
        time.run(
            dt.timedelta(minutes=2),
            sub_account_resale_price_set,
            principal=billing,
            sub_account_id=subs[index].pk,
            price=price,
        )
    time.at_moment(
        start + dt.timedelta(days=RESALE_DEFAULT_DAY, hours=11),
        resale_default_set,
        principal=billing,
        price=RESALE_DEFAULT,
    )


def _merge_and_delete(
    time: _Timeline,
    admin: Principal,
    staff: Principal,
    clients: list[tuple[SubAccount, int]],
    available_id: int,
    start: dt.datetime,
    out: TextIO,
) -> None:
    """A merge requested, approved and completed; then a deletion approved, in retention."""
    source, target = clients[MERGED_AWAY][0], clients[MERGE_TARGET][0]
    time.until(start + dt.timedelta(days=MERGE_DAY, hours=14))
    merge = time.run(
        dt.timedelta(minutes=1),
        merge_request_create,
        principal=admin,
        source_ids=[source.pk],
        target_id=target.pk,
        reason="Both dental practices now belong to one group.",
    )
    time.run(dt.timedelta(hours=3), merge_request_approve, principal=staff, request_id=merge.pk)
    time.run(
        dt.timedelta(minutes=2),
        merge_request_run,
        principal=Principal.system("task:merge"),
        request_id=merge.pk,
    )
    out.write(f"  {source.name} merged into {target.name}\n")

    leaving = clients[DELETED][0]
    time.until(start + dt.timedelta(days=DELETION_DAY, hours=10))
    deletion = time.run(
        dt.timedelta(minutes=1),
        deletion_request_create,
        principal=admin,
        sub_account_id=leaving.pk,
        line_disposition=LineDisposition.MOVE,
        move_to_id=available_id,
        reason="The client ended its contract.",
    )
    time.run(
        dt.timedelta(hours=2), deletion_request_approve, principal=staff, request_id=deletion.pk
    )
    out.write(f"  {leaving.name} deleted, its lines back in Available (restorable for 30 days)\n")


def _seed_northwind(
    *, system: Principal, rng: random.Random, start: dt.datetime, now: dt.datetime
) -> Partner:
    time = _Timeline(start)
    with clock.frozen_at(time.at):
        partner = partner_create(
            principal=system,
            name=OTHER_PARTNER,
            timezone="Europe/London",
            currency="GBP",
            line_price="45.00",
        )
        admin = _people(partner, system, NORTHWIND_USERS)[Role.ADMIN]
    time.every_billing_run(partner.timezone, until=now)
    numbers = [f"+44207946{i:04d}" for i in range(100, 112)]
    time.run(dt.timedelta(hours=1), inventory_import, principal=system, csv_text=_csv(numbers))
    time.run(
        dt.timedelta(minutes=30),
        line_order_create,
        principal=admin,
        quantity=len(numbers),
    )
    clients = time.run(dt.timedelta(minutes=30), _clients, actor=admin, clients=NORTHWIND_CLIENTS)
    lines = list(Line.objects.filter(partner=partner).order_by("pk").values_list("pk", flat=True))
    targets = [sa.pk for sa, share in clients for _ in range(share)]
    by_id = {sa.pk: sa for sa, _ in clients}
    for n, (line_id, target) in enumerate(zip(lines, targets, strict=False)):
        time.run(
            dt.timedelta(hours=2),
            line_assign,
            principal=admin,
            line_id=line_id,
            sub_account_id=target,
            **_details(rng, by_id[target], n + 1),
        )
    time.until(now - dt.timedelta(minutes=1))
    return partner


# Quiet enough that `make demo` seeds in seconds through the real ingestion path, with
# a few small-limit lines running hot and one client that rarely gets answers.
DEMO_TRAFFIC = TrafficModel(
    seed=RANDOM_SEED, base_fraction=(0.004, 0.015), hot_share=0.02, hot_max_limit=50
)
TRAFFIC_DAYS = HISTORY_DAYS - 1


def _seed_traffic(partner: Partner, *, now: dt.datetime, out: TextIO) -> None:
    """The history's days of simulated messages through ingestion, then the days closed."""
    report = simulate(partner=partner, days=TRAFFIC_DAYS, now=now, model=DEMO_TRAFFIC)
    with clock.frozen_at(now):
        analytics_days_close(partner_id=partner.pk)
    out.write(f"  {report.accepted:,} message events over {TRAFFIC_DAYS} days for {partner.name}\n")


# The manager's alert rules (domain §8.4): each sub-account's volume-limit usage, response
# rate and over-pressured line-days, and the partner's pool of spare lines.
DEMO_ALERT_RULES = (
    {"metric": "volume_limit_usage", "comparator": "above", "threshold": "0.8", "window_days": 7},
    {"metric": "response_rate", "comparator": "below", "threshold": "0.2", "window_days": 7},
    {
        "metric": "over_pressured_line_days",
        "comparator": "above",
        "threshold": "2",
        "window_days": 30,
    },
    {"metric": "available_lines", "comparator": "below", "threshold": "10", "window_days": 1},
)


def _seed_alerts(partner: Partner, *, now: dt.datetime, out: TextIO) -> None:
    """The manager's rules, written through the service, and the worker's evaluation of
    them over the traffic just seeded: the Alerts tab opens with some firing."""
    manager = Principal.for_user(User.objects.get(email=DEMO_USERS[1][0]))
    with clock.frozen_at(now - dt.timedelta(minutes=30)):
        for fields in DEMO_ALERT_RULES:
            alert_rule_create(principal=manager, **fields)
    with clock.frozen_at(now):
        report = alerts_evaluate(principal=EVALUATOR.acting_for(partner.pk))
    firing = f"{report.fired} alert{'s' if report.fired != 1 else ''} firing"
    out.write(f"  {len(DEMO_ALERT_RULES)} alert rules, {firing}\n")


def seed_demo(*, stdout: TextIO) -> DemoResult:
    """Create the demo partners, people and history. One transaction: all or nothing."""
    rng = random.Random(RANDOM_SEED)
    system = Principal.system("cli:demo")
    now = clock.now().replace(microsecond=0)
    with transaction.atomic():
        stdout.write("Seeding demo data…\n")
        with clock.frozen_at(now - dt.timedelta(days=HISTORY_DAYS + 1)):
            staff = Principal.for_user(
                staff_create(principal=system, email=STAFF_EMAIL, password=DEMO_PASSWORD)
            )
        partner, api_key = _seed_demo_partner(
            system=system, staff=staff, rng=rng, now=now, out=stdout
        )
        other = _seed_northwind(system=system, rng=rng, start=now - dt.timedelta(days=45), now=now)
        stdout.write(f"  {other.name}: a second partner, to show the wall between tenants\n")
        _seed_traffic(partner, now=now, out=stdout)
        _seed_traffic(other, now=now, out=stdout)
        _seed_alerts(partner, now=now, out=stdout)
    return DemoResult(partner=partner, other_partner=other, api_key=api_key, logins=demo_logins())
