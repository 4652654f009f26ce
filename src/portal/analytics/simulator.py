"""Plausible, repeatable message traffic for a partner's lines: the demo's and the benchmark's.

Given the lines (and who held each when), :func:`generate_events` produces message
events in the API's shape, day by partner-local day:

- every line gets a daily volume of new outbound conversations around a fraction
  of its daily limit (``base_fraction``); a share of the lines runs hot, at 90 to
  120 % of it (so some line-days are near and some over the limit);
- weekends are quieter (``weekend_factor``); messages fall in local office hours;
- each conversation is a fresh contact: an outbound message, sometimes a follow-up,
  and a reply with a probability that depends on the sub-account holding the line
  (one sub-account answers far less often, so the comparison flags it);
- a few contacts write first (inbound conversations), and the line answers;
- lines in the Available pool, and moments when a line was not active, carry no
  traffic; nothing is generated after ``now``.

Everything comes from one seeded ``random.Random`` per (line, day), keyed by the line's
number, not its id, so the same inputs give the same events whatever the order they are
asked for in and whatever ids the database handed out (PostgreSQL's sequences do not roll
back: a test database's ids depend on the tests before). Reply rates follow the
sub-accounts' order by id, which is their order of creation.

:func:`simulate` feeds the events through :func:`ingestion.message_events_ingest`
in batches, exactly like the platform's API, so conversations and rollups are the
real ones. :func:`generate_daily_counts` is the fast path for the benchmark: the
same model summarised per (line, day) without events, to write rollups COPY-fast.

Internal (``core.tenancy``): it takes a bare partner; the demo and the benchmark
name it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from portal.analytics.ingestion import MAX_BATCH, IngestReport, message_events_ingest
from portal.core import clock
from portal.core.principal import Principal
from portal.lines.models import AssignmentPeriod, Line
from portal.partners.models import Partner, SubAccount, SubAccountKind

DEFAULT_DAYS = 60
DEFAULT_SEED = 20240601
OFFICE_HOURS = (8 * 3600, 19 * 3600)  # first outbound messages, local time


@dataclass(frozen=True, slots=True)
class Holding:
    """``[start, end)`` during which ``sub_account_id`` held the line."""

    start: dt.datetime
    end: dt.datetime | None
    sub_account_id: int
    in_pool: bool = False


@dataclass(frozen=True, slots=True)
class SimLine:
    line_id: int
    number: str
    daily_limit: int
    holdings: tuple[Holding, ...]

    def holder_at(self, at: dt.datetime) -> Holding | None:
        i = bisect.bisect_right([h.start for h in self.holdings], at) - 1
        if i < 0:
            return None
        holding = self.holdings[i]
        return holding if holding.end is None or at < holding.end else None


@dataclass(frozen=True)
class TrafficModel:
    """The knobs of the traffic; the defaults give a believable month for a reseller."""

    seed: int = DEFAULT_SEED
    base_fraction: tuple[float, float] = (0.15, 0.5)  # of the daily limit, per line
    hot_share: float = 0.08  # lines running at 90-120 % of their limit
    hot_fraction: tuple[float, float] = (0.9, 1.2)
    hot_max_limit: int | None = None  # only lines with a limit up to this run hot
    weekend_factor: float = 0.35
    reply_rate: tuple[float, float] = (0.3, 0.6)  # per sub-account
    underperforming_reply_rate: float = 0.08  # one sub-account
    follow_up_rate: float = 0.3
    inbound_first_share: float = 0.05  # inbound conversations per new one

    def line_fraction(self, number: str, daily_limit: int = 0) -> float:
        rng = random.Random(f"{self.seed}:fraction:{number}")
        may_run_hot = self.hot_max_limit is None or daily_limit <= self.hot_max_limit
        if rng.random() < self.hot_share and may_run_hot:
            return rng.uniform(*self.hot_fraction)
        return rng.uniform(*self.base_fraction)

    def reply_rates(self, sub_account_ids: Iterable[int]) -> dict[int, float]:
        ids = sorted(set(sub_account_ids))
        rng = random.Random(f"{self.seed}:replies")
        rates = {pk: rng.uniform(*self.reply_rate) for pk in ids}
        if len(ids) > 2:
            rates[ids[rng.randrange(len(ids))]] = self.underperforming_reply_rate
        return rates

    def new_conversations(self, line: SimLine, day: dt.date, rng: random.Random) -> int:
        volume = line.daily_limit * self.line_fraction(line.number, line.daily_limit)
        if day.weekday() >= 5:
            volume *= self.weekend_factor
        volume *= rng.uniform(0.85, 1.15)
        whole = int(volume)
        return whole + (rng.random() < volume - whole)


# --- Reading the lines ------------------------------------------------------------------


def partner_lines(partner_id: int) -> list[SimLine]:
    """The partner's lines with their holdings (every assignment period, oldest first)."""
    pool_ids = set(
        SubAccount.objects.filter(partner_id=partner_id, kind=SubAccountKind.AVAILABLE).values_list(
            "pk", flat=True
        )
    )
    holdings: dict[int, list[Holding]] = {}
    periods = (
        AssignmentPeriod.objects.filter(partner_id=partner_id)
        .order_by("line_id", "start")
        .values_list("line_id", "start", "end", "sub_account_id")
    )
    for line_id, start, end, sub_account_id in periods:
        if start != end:
            holdings.setdefault(line_id, []).append(
                Holding(start, end, sub_account_id, sub_account_id in pool_ids)
            )
    lines = Line.objects.filter(partner_id=partner_id).order_by("pk")
    return [
        SimLine(pk, number, limit, tuple(holdings.get(pk, ())))
        for pk, number, limit in lines.values_list("pk", "number", "daily_limit")
    ]


# --- Generating ---------------------------------------------------------------------------


def _contact(line_id: int, day: dt.date, n: int) -> str:
    # A fresh contact per conversation: "+1 555" and 12 digits, unique per (line, day, n).
    return f"+1555{line_id % 100_000:05d}{day.toordinal() % 10_000:04d}{n:03d}"


def _line_day(
    line: SimLine,
    day: dt.date,
    zone: zoneinfo.ZoneInfo,
    model: TrafficModel,
    rates: dict[int, float],
    now: dt.datetime,
) -> Iterator[tuple[dt.datetime, str, str, str]]:
    """``(at, event_id, direction, contact)`` of one line's day."""
    rng = random.Random(f"{model.seed}:{line.number}:{day.toordinal()}")
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    new = model.new_conversations(line, day, rng)
    inbound_first = sum(rng.random() < model.inbound_first_share for _ in range(max(new, 1)))
    prefix = f"sim-{line.line_id}-{day.isoformat()}"
    for n in range(new + inbound_first):
        at = (midnight + dt.timedelta(seconds=rng.uniform(*OFFICE_HOURS))).astimezone(dt.UTC)
        holder = line.holder_at(at)
        if holder is None or holder.in_pool or at > now:
            continue
        contact = _contact(line.line_id, day, n)
        talk = [("outbound", at)] if n < new else [("inbound", at), ("outbound", None)]
        if n < new:
            if rng.random() < model.follow_up_rate:
                talk.append(("outbound", None))
            if rng.random() < rates.get(holder.sub_account_id, model.reply_rate[0]):
                talk.append(("inbound", None))
                if rng.random() < 0.5:
                    talk.append(("outbound", None))
        previous = at
        for k, (direction, when) in enumerate(talk):
            when = when or previous + dt.timedelta(seconds=30 + rng.expovariate(1 / 2400))
            previous = when
            if when > now or line.holder_at(when) is None:
                break
            yield when, f"{prefix}-{n}-{k}", direction, contact


def _days(zone: zoneinfo.ZoneInfo, days: int, now: dt.datetime) -> list[dt.date]:
    today = now.astimezone(zone).date()
    return [today - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]


def generate_events(
    lines: Sequence[SimLine],
    *,
    timezone: str,
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
    model: TrafficModel | None = None,
) -> Iterator[dict[str, Any]]:
    """Events in the API's shape for the last ``days`` partner-local days up to ``now``.

    Day by day (every line's messages of a day, in time order), so batches cut from
    the stream arrive roughly in order, as from the platform.
    """
    model = model or TrafficModel()
    now = now or clock.now()
    zone = zoneinfo.ZoneInfo(timezone)
    rates = model.reply_rates(h.sub_account_id for line in lines for h in line.holdings)
    for day in _days(zone, days, now):
        todays = []
        for line in lines:
            for at, event_id, direction, contact in _line_day(line, day, zone, model, rates, now):
                todays.append((at, event_id, line.number, direction, contact))
        todays.sort()
        for at, event_id, number, direction, contact in todays:
            yield {
                "id": event_id,
                "line": number,
                "direction": direction,
                "contact": contact,
                "occurred_at": at.isoformat().replace("+00:00", "Z"),
            }


@dataclass
class SimulationReport:
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0

    def add(self, batch: int, report: IngestReport) -> None:
        self.events += batch
        self.accepted += report.accepted
        self.duplicates += report.duplicates
        self.rejected += len(report.rejected)
        self.batches += 1


def simulate(
    *,
    partner: Partner,
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
    model: TrafficModel | None = None,
    batch_size: int = MAX_BATCH,
    principal: Principal | None = None,
) -> SimulationReport:
    """Generate the partner's traffic and ingest it in batches, as the platform would post it.

    Rerunning it ingests the same ids again: every event then counts as a duplicate.
    """
    principal = principal or Principal.system("simulator")
    report = SimulationReport()
    batch: list[dict[str, Any]] = []
    events = generate_events(
        partner_lines(partner.pk), timezone=partner.timezone, days=days, now=now, model=model
    )
    for event in events:
        batch.append(event)
        if len(batch) == batch_size:
            report.add(len(batch), message_events_ingest(principal=principal, events=batch))
            batch = []
    if batch:
        report.add(len(batch), message_events_ingest(principal=principal, events=batch))
    return report


# --- The fast path: daily sub-account figures without events ----------------------------------


@dataclass(frozen=True, slots=True)
class SubAccountDay:
    """One row of ``DailySubAccountRollup``'s columns."""

    sub_account_id: int
    day: dt.date
    messages_sent: int
    messages_received: int
    new_conversations: int
    responded_conversations: int
    inbound_conversations: int
    near_limit_line_days: int
    over_pressured_line_days: int
    active_line_days: int
    limit_line_days: int


def generate_sub_account_days(
    sub_accounts: Iterable[tuple[int, int, int]],
    *,
    first_day: dt.date,
    days: int,
    model: TrafficModel | None = None,
) -> Iterator[SubAccountDay]:
    """The same traffic model summed per (sub-account, day), for sub-accounts whose lines
    are held all period: ``sub_accounts`` are ``(sub_account_id, lines, Σ daily limits)``.

    No events and no conversations: the benchmark writes these straight into the
    rollup table to measure reads at a scale ingestion would take hours to build.
    One seeded generator per sub-account, so the rows are repeatable.
    """
    model = model or TrafficModel()
    sub_accounts = list(sub_accounts)
    rates = model.reply_rates(pk for pk, _, _ in sub_accounts)
    mean_fraction = (1 - model.hot_share) * sum(model.base_fraction) / 2 + model.hot_share * sum(
        model.hot_fraction
    ) / 2
    for sub_account_id, lines, limits in sub_accounts:
        rng = random.Random(f"{model.seed}:sub:{sub_account_id}")
        rate = rates[sub_account_id]
        for i in range(days):
            day = first_day + dt.timedelta(days=i)
            volume = limits * mean_fraction * rng.uniform(0.85, 1.15)
            hot = sum(rng.random() < model.hot_share for _ in range(min(lines, 64)))
            if day.weekday() >= 5:
                volume *= model.weekend_factor
                hot = 0
            new = int(volume)
            responded = min(new, round(new * rate))
            inbound = round(new * model.inbound_first_share)
            over = sum(rng.random() < 0.5 for _ in range(hot))
            yield SubAccountDay(
                sub_account_id,
                day,
                messages_sent=new + round(new * model.follow_up_rate) + responded // 2 + inbound,
                messages_received=responded + inbound,
                new_conversations=new,
                responded_conversations=responded,
                inbound_conversations=inbound,
                near_limit_line_days=hot,
                over_pressured_line_days=over,
                active_line_days=lines,
                limit_line_days=limits,
            )
