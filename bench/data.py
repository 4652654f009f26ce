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

``make_reseller_dataset`` builds the platform of issue 7 (50 partners, one with a
million lines in ten thousand sub-accounts, a year of history each, 90 days of
analytics rollups) with ``make_partner_year``; the tables' secondary indexes are
dropped while it loads and built afresh after (``indexes_rebuilt_after``), about a
minute and a half at full size on two cores.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import DatabaseError, connection, transaction

from portal.analytics.models import (
    DailyPartnerRollup,
    DailySubAccountRollup,
    SubAccountRollupBucket,
)
from portal.billing.periods import Cycle
from portal.core import clock
from portal.core.principal import Principal
from portal.lines.models import AssignmentPeriod, Line
from portal.partners.models import Partner, SubAccount, SubAccountKind
from portal.partners.services import partner_create

BENCH = Principal.system("bench")
DAILY_LIMIT = 50

SUB_ACCOUNT_COLUMNS = (
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
)
LINE_COLUMNS = (
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
)
PERIOD_COLUMNS = ("partner_id", "line_id", "sub_account_id", "start", "end", "via_merge")


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
        SUB_ACCOUNT_COLUMNS,
        (
            f"{pk}\t{pid}\t{sa_names[pk]}\tstandard\tactive\t\t\t\t\t\t\\N\t\t\\N\t"
            f"{counts[pk]}\t{now}\t{now}\n"
            for pk in sa_ids
        ),
    )
    SubAccount.objects.filter(pk=pool_id).update(line_count=counts[pool_id])
    _copy(
        Line._meta.db_table,
        LINE_COLUMNS,
        iter(line_rows),
    )
    _copy(
        AssignmentPeriod._meta.db_table,
        PERIOD_COLUMNS,
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


# --- A reseller platform: 50 partners, one of them large, a year of history ----------------


@dataclass
class PartnerYear:
    """What :func:`make_partner_year` wrote."""

    partner: Partner
    pool_id: int
    sub_account_ids: list[int]
    first_line_id: int
    lines: int
    active_lines: int
    moves: int
    periods: int
    start: dt.datetime
    end: dt.datetime


@dataclass
class ResellerDataset:
    """What :func:`make_reseller_dataset` wrote: the large partner and the others."""

    large: PartnerYear
    others: list[PartnerYear]
    rollup_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def partners(self) -> int:
        return 1 + len(self.others)

    @property
    def lines(self) -> int:
        return self.large.lines + sum(p.lines for p in self.others)

    @property
    def periods(self) -> int:
        return self.large.periods + sum(p.periods for p in self.others)


class _Stamps:
    """Text timestamps for COPY, ``seconds`` after ``origin`` (UTC), without datetime math
    per row: a million lines with two periods each would spend most of their time there.
    """

    def __init__(self, origin: dt.datetime, days: int) -> None:
        self.origin = origin.astimezone(dt.UTC)
        base = self.origin.replace(hour=0, minute=0, second=0, microsecond=0)
        self.shift = int((self.origin - base).total_seconds())
        self.days = [(base + dt.timedelta(days=d)).strftime("%Y-%m-%d ") for d in range(days + 2)]

    def __call__(self, seconds: int) -> str:
        day, rest = divmod(seconds + self.shift, 86_400)
        hours, rest = divmod(rest, 3_600)
        minutes, secs = divmod(rest, 60)
        return f"{self.days[day]}{hours:02d}:{minutes:02d}:{secs:02d}+00"


def make_partner_year(
    *,
    lines: int,
    sub_accounts: int,
    end: dt.datetime,
    days: int = 365,
    moves: int | None = None,
    name: str = "Bench Reseller",
    number_prefix: str = "+1666",
    number_base: int = 0,
    seed: int = 7,
    analyze: bool = True,
) -> PartnerYear:
    """One partner with ``lines`` lines in ``sub_accounts`` sub-accounts (plus Available)
    and ``days`` days of assignment history ending at ``end``.

    Sizes are skewed as at a real reseller (Zipf-like: the largest sub-account holds
    about 2 % of the lines, the smallest a few dozen out of a million); Available holds
    about 1 %. A fifth of the lines were activated inside the window, the rest before it;
    about 5 % were disconnected inside it. ``moves`` (default: one per line) are spread
    over the window, a line moving 1 to 3 times. Every invariant of
    :mod:`bench.data`'s docstring holds; ids are reserved from the tables' sequences,
    so the rows sit beside whatever else the database holds.
    """
    rng = random.Random(seed)
    moves = lines if moves is None else moves
    start = end - dt.timedelta(days=days)
    span = days * 86_400
    stamp = _Stamps(start - dt.timedelta(days=1), days + 1)
    before = 0  # a day before the window, where the stamps begin

    with clock.frozen_at(start - dt.timedelta(days=2)):
        partner = partner_create(principal=BENCH, name=name, line_price=Decimal("50.00"))
    pool_id = SubAccount.objects.get(partner=partner, kind=SubAccountKind.AVAILABLE).pk
    first_sa = _next_ids(SubAccount, sub_accounts)
    sa_ids = list(range(first_sa, first_sa + sub_accounts))
    flavours = ("Client {i} – Sales", "Clïent {i} – Équipe", "Πελάτης {i}", "Клиент {i}")
    sa_names = {pk: flavours[k % len(flavours)].format(i=k + 1) for k, pk in enumerate(sa_ids)}

    # Holders by weight: Available 1 %, sub-accounts Zipf(0.7) in shuffled rank order.
    ranks = list(range(1, sub_accounts + 1))
    rng.shuffle(ranks)
    weights = [r**-0.7 for r in ranks]
    total = sum(weights)
    holders = [pool_id, *sa_ids]
    cumulative: list[float] = []
    acc = 0.0
    for w in [0.01 * total / 0.99, *weights]:
        acc += w
        cumulative.append(acc)
    initial = rng.choices(holders, cum_weights=cumulative, k=lines)

    # Move targets drawn in blocks (one call per 10,000 is cheaper than one per move).
    def draw_targets() -> Iterator[int]:
        while True:
            yield from rng.choices(holders, cum_weights=cumulative, k=10_000)

    targets = draw_targets()

    first_line = _next_ids(Line, lines)
    pid = partner.pk
    counts: dict[int, int] = dict.fromkeys(holders, 0)
    line_rows: list[str] = []
    period_rows: list[str] = []
    move_share = moves / max(1, lines)
    moved = 0
    rand, randrange = rng.random, rng.randrange
    for i in range(lines):
        line_id = first_line + i
        holder = initial[i]
        at = randrange(86_400, 86_400 + span) if rand() < 0.2 else before + randrange(3_600)
        activated = at
        ends = randrange(at + 60, 86_400 + span) if rand() < 0.05 else None
        # 1-3 moves for a share of the lines that makes ``moves`` on average.
        n = 0
        if rand() < move_share / 1.6:
            n = 1 if rand() < 0.6 else (2 if rand() < 0.75 else 4)
        if n:
            last = ends if ends is not None else 86_400 + span
            times = sorted(randrange(at + 1, last) for _ in range(n)) if last > at + n else []
            for when in times:
                target = next(targets)
                if target == holder:
                    target = pool_id if holder != pool_id else sa_ids[0]
                period_rows.append(f"{pid}\t{line_id}\t{holder}\t{stamp(at)}\t{stamp(when)}\tf\n")
                holder, at = target, when
                moved += 1
        number = f"{number_prefix}{number_base + i:07d}"
        if ends is not None:
            period_rows.append(f"{pid}\t{line_id}\t{holder}\t{stamp(at)}\t{stamp(ends)}\tf\n")
            line_rows.append(
                f"{line_id}\t{pid}\t{number}\tdisconnected\t\\N\t\t\t\t\t{DAILY_LIMIT}\t"
                f"\\N\t{stamp(activated)}\t{stamp(ends)}\n"
            )
        else:
            period_rows.append(f"{pid}\t{line_id}\t{holder}\t{stamp(at)}\t\\N\tf\n")
            label = f"Rep {i % 997}" if holder != pool_id else ""
            line_rows.append(
                f"{line_id}\t{pid}\t{number}\tactive\t{holder}\t{label}\t\t\t\t{DAILY_LIMIT}\t"
                f"\\N\t{stamp(activated)}\t\\N\n"
            )
            counts[holder] += 1

    created = _ts(start - dt.timedelta(days=2))
    with transaction.atomic(), _without_foreign_key_checks():
        _copy(
            SubAccount._meta.db_table,
            SUB_ACCOUNT_COLUMNS,
            (
                f"{pk}\t{pid}\t{sa_names[pk]}\tstandard\tactive\t\t\t\t\t\t\\N\t\t\\N\t"
                f"{counts[pk]}\t{created}\t{created}\n"
                for pk in sa_ids
            ),
        )
        SubAccount.objects.filter(pk=pool_id).update(line_count=counts[pool_id])
        _copy(Line._meta.db_table, LINE_COLUMNS, iter(line_rows))
        _copy(AssignmentPeriod._meta.db_table, PERIOD_COLUMNS, iter(period_rows))
    if analyze:
        _analyze()
    return PartnerYear(
        partner=partner,
        pool_id=pool_id,
        sub_account_ids=sa_ids,
        first_line_id=first_line,
        lines=lines,
        active_lines=sum(counts.values()),
        moves=moved,
        periods=len(period_rows),
        start=start,
        end=end,
    )


@contextmanager
def _without_foreign_key_checks() -> Iterator[None]:
    """Inside a transaction: no foreign-key triggers for the rows COPYed here.

    Django's foreign keys are deferred, so every COPYed row queues a check that runs at
    commit, one lookup per row and key: most of the time of loading a million lines.
    The generator writes only ids it reserved or read, so the checks would find
    nothing; ``session_replication_role`` (superuser only, the bench's usual role)
    skips them for this transaction. Without the privilege the checks simply run.
    """
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT bench_replica")
        try:
            cursor.execute("SET LOCAL session_replication_role = replica")
        except DatabaseError:
            cursor.execute("ROLLBACK TO SAVEPOINT bench_replica")
        else:
            cursor.execute("RELEASE SAVEPOINT bench_replica")
    yield


@contextmanager
def indexes_rebuilt_after(*models: type) -> Iterator[None]:
    """Drop the models' tables' secondary indexes for the block and build them afresh
    after it: one sort per index instead of millions of random insertions (the
    periods of a million lines load several times faster). Indexes that back a
    constraint (primary keys) stay. The unique partial indexes are rebuilt too, which
    checks them over everything loaded. PostgreSQL only.
    """
    tables = [m._meta.db_table for m in models]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conindid = (quote_ident(i.schemaname) || '.' || "
            "quote_ident(i.indexname))::regclass)",
            [tables],
        )
        dropped = cursor.fetchall()
        for name, _ in dropped:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '256MB'")
            for _, definition in dropped:
                cursor.execute(definition)
            cursor.execute("RESET maintenance_work_mem")


def _analyze(*, vacuum: bool = False) -> None:
    """Statistics (and, with ``vacuum``, visibility maps) for the tables just loaded, as
    autovacuum would leave them on a production database after a while."""
    verb = "VACUUM (ANALYZE)" if vacuum else "ANALYZE"
    with connection.cursor() as cursor:
        for model in (SubAccount, Line, AssignmentPeriod):
            cursor.execute(f"{verb} {connection.ops.quote_name(model._meta.db_table)}")


LARGE_LINES, LARGE_SUB_ACCOUNTS, PARTNERS = 1_000_000, 10_000, 50
ROLLUP_DAYS = 90


def make_reseller_dataset(
    *,
    scale: float = 1.0,
    end: dt.datetime | None = None,
    rollup_days: int = ROLLUP_DAYS,
    partners: int = PARTNERS,
    seed: int = 2026,
) -> ResellerDataset:
    """The platform of issue 7: ``partners`` partners; the large one has
    ``1,000,000 × scale`` lines in ``10,000 × scale`` sub-accounts with a year of
    assignment history ending at ``end`` (default: an hour ago) and ``rollup_days`` of
    sub-account analytics rollups ending today (``bench.analytics``' generator); the
    others have 200 to 4,000 lines each (× scale) with their own year.

    Numbers use +1666 (large) and +1667 (others), apart from the other suites' +1555.
    """
    rng = random.Random(seed)
    end = end or clock.now() - dt.timedelta(hours=1)
    seconds: dict[str, float] = {}
    others: list[PartnerYear] = []
    base = 0
    with indexes_rebuilt_after(Line, AssignmentPeriod):
        t0 = time.perf_counter()
        for k in range(partners - 1):
            n = max(20, round(rng.randint(200, 4_000) * scale))
            others.append(
                make_partner_year(
                    lines=n,
                    sub_accounts=max(2, n // 40),
                    end=end,
                    name=f"Reseller {k + 2:02d}",
                    number_prefix="+1667",
                    number_base=base,
                    seed=seed + k + 1,
                    analyze=False,
                )
            )
            base += n
        seconds["others"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        large = make_partner_year(
            lines=max(100, round(LARGE_LINES * scale)),
            sub_accounts=max(10, round(LARGE_SUB_ACCOUNTS * scale)),
            end=end,
            name="Large Reseller",
            number_prefix="+1666",
            seed=seed,
            analyze=False,
        )
        seconds["large"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    seconds["indexes"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _analyze(vacuum=True)
    seconds["vacuum"] = time.perf_counter() - t0
    rollup_rows = 0
    if rollup_days:
        # Imported here: bench.analytics imports this module.
        from bench.analytics import _write_rollups

        t0 = time.perf_counter()
        today = clock.now().date()
        rollup_rows = _write_rollups(
            large.partner.pk, today - dt.timedelta(days=rollup_days - 1), today
        )
        # Statistics as autovacuum would leave them, as bench.analytics does: without them
        # the planner takes the freshly COPYed tables for empty (a sort spilling to disk
        # where a hash aggregate fits in memory), or not, as autovacuum happens to run.
        with connection.cursor() as cursor:
            for model in (DailySubAccountRollup, SubAccountRollupBucket, DailyPartnerRollup):
                cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        seconds["rollups"] = time.perf_counter() - t0
    return ResellerDataset(large=large, others=others, rollup_rows=rollup_rows, seconds=seconds)
