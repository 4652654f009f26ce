"""Benchmark data: one partner with many lines and a month of history, COPY-fast.

Rows go straight into the tables with PostgreSQL ``COPY … FROM STDIN`` on Django's own
connection (the ORM would spend minutes on a million objects). The partner and its
Available pool come from ``partner_create`` so they are exactly what the portal makes;
everything below them is written here and must keep the models' invariants, because
the code under measurement relies on them:

- every line has periods that tile its active life without gap or overlap; an active
  line has exactly one open period naming ``line.sub_account``; a disconnected line
  has none and no sub-account;
- ``SubAccount.line_count`` equals the number of active lines it holds;
- numbers are E.164 and unique among active lines (``number_base`` keeps several
  partners of one database apart).

The history is laid in ``cycle`` (the cycle whose invoice carries the prorations, i.e.
the one *before* the invoice's): ``moves`` moves spread over its days, most lines
moving once, some several times, some several times in one day (A→C→B, A→B→A);
``activations`` lines activated inside it and ``disconnections`` lines disconnected
inside it. Reusable by other suites: ``make_partner_history`` returns the ids.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection

from portal.accounts.principal import Principal
from portal.billing.periods import Cycle
from portal.core import clock
from portal.lines.models import AssignmentPeriod, Line
from portal.partners.models import Partner, SubAccount, SubAccountKind
from portal.partners.services import partner_create

BENCH = Principal.system("bench")
DAILY_LIMIT = 50


@dataclass
class History:
    """What :func:`make_partner_history` wrote (ids and counts, for measuring and checks)."""

    partner: Partner
    pool_id: int
    sub_account_ids: list[int]
    cycle: Cycle
    lines: int
    moves: int
    activations: int
    disconnections: int
    periods: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _ts(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def _copy(table: str, columns: Iterable[str], rows: Iterator[str]) -> None:
    """``COPY table (columns) FROM STDIN`` fed with pre-formatted text rows, in chunks."""
    cols = ", ".join(connection.ops.quote_name(c) for c in columns)
    sql = f"COPY {connection.ops.quote_name(table)} ({cols}) FROM STDIN"
    with connection.cursor() as cursor, cursor.copy(sql) as copy:
        chunk: list[str] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= 20_000:
                copy.write("".join(chunk))
                chunk.clear()
        if chunk:
            copy.write("".join(chunk))


def _next_ids(model: type, count: int) -> int:
    """Reserve ``count`` ids of ``model``'s identity sequence; returns the first."""
    table = model._meta.db_table
    qualified = connection.ops.quote_name(table)
    # Only a quoted table name is formatted in.
    sql = f"SELECT setval(pg_get_serial_sequence(%s, 'id'), COALESCE((SELECT MAX(id) FROM {qualified}), 0) + %s)"  # noqa: S608, E501
    with connection.cursor() as cursor:
        cursor.execute(sql, [table, count])
        last = cursor.fetchone()[0]
    return last - count + 1


def make_partner_history(
    *,
    lines: int,
    sub_accounts: int,
    moves: int,
    cycle: Cycle,
    activations: int | None = None,
    disconnections: int | None = None,
    name: str = "Bench Partner",
    number_base: int = 0,
    seed: int = 42,
) -> History:
    """One partner with ``lines`` lines in ``sub_accounts`` sub-accounts (plus Available)
    and ``moves`` moves, ``activations`` new lines and ``disconnections`` inside ``cycle``.

    Lines not activated inside the cycle were activated a few months before it. The
    Available pool holds about 1% of the lines, like a partner's stock.
    """
    if cycle.tz != "UTC":
        raise ValueError("bench histories are laid in UTC cycles")
    rng = random.Random(seed)
    activations = lines // 100 if activations is None else activations
    disconnections = lines // 200 if disconnections is None else disconnections
    timings: dict[str, float] = {}
    with clock.frozen_at(cycle.start - dt.timedelta(days=120)):
        partner = partner_create(principal=BENCH, name=name, line_price=Decimal("50.00"))
    pool_id = SubAccount.objects.get(partner=partner, kind=SubAccountKind.AVAILABLE).pk

    # Sub-accounts: names with accents, Greek and Cyrillic now and then, as partners have.
    first_sa = _next_ids(SubAccount, sub_accounts)
    sa_ids = list(range(first_sa, first_sa + sub_accounts))
    flavours = ("Client {i} – Sales", "Clïent {i} – Équipe", "Πελάτης {i}", "Клиент {i}")
    sa_names = {pk: flavours[k % len(flavours)].format(i=k + 1) for k, pk in enumerate(sa_ids)}
    holders = [pool_id, *sa_ids]

    def holder_of(i: int) -> int:
        return pool_id if i % 100 == 0 else sa_ids[i % sub_accounts]

    n = cycle.days
    start = cycle.start
    day = dt.timedelta(days=1)
    before = start - dt.timedelta(days=90)

    def instant(d: int) -> dt.datetime:
        """A random instant inside day ``d`` (1-based) of the cycle."""
        return start + (d - 1) * day + dt.timedelta(seconds=rng.randrange(60, 86_340))

    # Which lines are new, disconnected, moved (and how often, on which days).
    first_line = _next_ids(Line, lines)
    order = list(range(lines))
    rng.shuffle(order)
    new_lines = set(order[:activations])
    gone = set(order[activations : activations + disconnections])
    movers = order[activations + disconnections :]
    schedule: dict[int, list[dt.datetime]] = {}
    remaining = moves
    k = 0
    while remaining > 0 and k < len(movers):
        i = movers[k]
        k += 1
        roll = rng.random()
        if roll < 0.80 or remaining == 1:
            times = [instant(rng.randint(1, n))]  # one move
        elif roll < 0.93:
            times = [instant(rng.randint(1, n)) for _ in range(min(remaining, rng.randint(2, 4)))]
        else:  # several moves in one day: they collapse (A→C→B is A→B, A→B→A is nothing)
            d = rng.randint(1, n)
            times = [instant(d) for _ in range(min(remaining, rng.randint(2, 3)))]
        schedule[i] = sorted(times)
        remaining -= len(times)
    moved = moves - remaining

    counts: dict[int, int] = dict.fromkeys(holders, 0)
    period_rows: list[str] = []
    line_rows: list[str] = []
    pid = partner.pk
    for i in range(lines):
        line_id = first_line + i
        holder = holder_of(i)
        activated = instant(rng.randint(1, n)) if i in new_lines else before
        at = activated
        for when in schedule.get(i, ()):
            target = rng.choice(holders)
            if target == holder:
                target = pool_id if holder != pool_id else sa_ids[0]
            period_rows.append(f"{pid}\t{line_id}\t{holder}\t{_ts(at)}\t{_ts(when)}\tf\n")
            holder, at = target, when
        number = f"+1555{number_base + i:07d}"
        if i in gone:
            ended = instant(rng.randint(2, n))
            period_rows.append(f"{pid}\t{line_id}\t{holder}\t{_ts(at)}\t{_ts(ended)}\tf\n")
            line_rows.append(
                f"{line_id}\t{pid}\t{number}\tdisconnected\t\\N\t\t\t\t\t{DAILY_LIMIT}\t"
                f"\\N\t{_ts(activated)}\t{_ts(ended)}\n"
            )
        else:
            period_rows.append(f"{pid}\t{line_id}\t{holder}\t{_ts(at)}\t\\N\tf\n")
            line_rows.append(
                f"{line_id}\t{pid}\t{number}\tactive\t{holder}\t\t\t\t\t{DAILY_LIMIT}\t"
                f"\\N\t{_ts(activated)}\t\\N\n"
            )
            counts[holder] += 1

    now = _ts(cycle.start - dt.timedelta(days=120))
    t0 = time.perf_counter()
    _copy(
        SubAccount._meta.db_table,
        [
            "id",
            "partner_id",
            "name",
            "kind",
            "status",
            "contact_name",
            "contact_email",
            "contact_phone",
            "internal_reference",
            "notes",
            "merged_into_id",
            "lock_reason",
            "purge_after",
            "line_count",
            "created_at",
            "updated_at",
        ],
        (
            f"{pk}\t{pid}\t{sa_names[pk]}\tstandard\tactive\t\t\t\t\t\t\\N\t\t\\N\t"
            f"{counts[pk]}\t{now}\t{now}\n"
            for pk in sa_ids
        ),
    )
    SubAccount.objects.filter(pk=pool_id).update(line_count=counts[pool_id])
    _copy(
        Line._meta.db_table,
        [
            "id",
            "partner_id",
            "number",
            "status",
            "sub_account_id",
            "label",
            "user_name",
            "user_email",
            "notes",
            "daily_limit",
            "order_id",
            "activated_at",
            "disconnected_at",
        ],
        iter(line_rows),
    )
    _copy(
        AssignmentPeriod._meta.db_table,
        ["partner_id", "line_id", "sub_account_id", "start", "end", "via_merge"],
        iter(period_rows),
    )
    with connection.cursor() as cursor:
        for model in (SubAccount, Line, AssignmentPeriod):
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    timings["copy"] = time.perf_counter() - t0
    return History(
        partner=partner,
        pool_id=pool_id,
        sub_account_ids=sa_ids,
        cycle=cycle,
        lines=lines,
        moves=moved,
        activations=activations,
        disconnections=disconnections,
        periods=len(period_rows),
        seconds=timings,
    )
