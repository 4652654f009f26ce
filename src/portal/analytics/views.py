"""Analytics pages: the partner's overview with a comparison of sub-accounts, one
sub-account's view with per-line usage, and CSV exports of both tables.

Figures come from the selectors the REST API uses (``sub_account_analytics_list``,
``sub_account_analytics``) and, for what the API does not offer, from
``analytics.reports``; these views only pick the period, sort, page and format.
The comparison is sorted and paged by the database (only the page's rows are read);
per-line usage, a sub-account's lines, is sorted here. Either way sorting covers the
whole list, so links, CSV and pages agree.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.formats import date_format

from portal.accounts.policies import can_read_partner_areas, require
from portal.analytics import advice, reports, selectors
from portal.analytics.periods import MAX_DAYS, Period, analytics_period
from portal.analytics.policies import can_read_capacity_advice
from portal.core import clock
from portal.core.downloads import csv_response
from portal.core.errors import Invalid
from portal.core.phone import display_number
from portal.core.text import csv_safe
from portal.lines.policies import can_change_lines
from portal.lines.views import bulk_move_dialog
from portal.partners.models import Partner, SubAccount, SubAccountStatus
from portal.partners.selectors import partner_for
from portal.web.decorators import portal_view
from portal.web.forms import attach_error
from portal.web.sorting import Column
from portal.web.sorting import sort_headers as _headers

PAGE_SIZE = 50
PRESETS = (7, 30, 90)
# Dates outside this span are typing slips, and arithmetic on them can overflow.
EARLIEST = dt.date(2000, 1, 1)
LATEST = dt.date(2099, 12, 31)
FLAG_LABELS = {"underperforming": "Underperforming", "over_pressured": "Over-pressured"}
DASH = "—"


# --- The period ------------------------------------------------------------------------------


class RangeForm(forms.Form):
    """Start and end dates, both optional: the default is the last 30 days."""

    start = forms.DateField(
        label="Start date",
        required=False,
        widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date such as 2026-01-31."},
    )
    end = forms.DateField(
        label="End date",
        required=False,
        widget=forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date such as 2026-01-31."},
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("start", "end"):
            value = data.get(name)
            if value is not None and not EARLIEST <= value <= LATEST:
                self.add_error(name, f"Enter a date between {EARLIEST} and {LATEST}.")
        start, end = data.get("start"), data.get("end")
        if self.errors or start is None or end is None:
            return data
        # The selector refuses these too; say it in a person's words, on the right field.
        if start > end:
            self.add_error("start", "The start date must be on or before the end date.")
        elif (end - start).days + 1 > MAX_DAYS:
            self.add_error("end", f"Choose a range of at most {MAX_DAYS} days.")
        return data


@dataclass
class Range:
    """The period asked for, or the form carrying what is wrong with it."""

    form: RangeForm
    partner: Partner
    period: Period | None


def _range(request: HttpRequest, partner: Partner) -> Range:
    form = RangeForm(request.GET)
    if not form.is_valid():
        return Range(form, partner, None)
    try:
        period = analytics_period(
            partner=partner, start=form.cleaned_data["start"], end=form.cleaned_data["end"]
        )
    except Invalid as exc:
        attach_error(form, exc)
        return Range(form, partner, None)
    # Show the dates in force, defaults included.
    form = RangeForm({"start": period.start.isoformat(), "end": period.end.isoformat()})
    form.is_valid()
    return Range(form, partner, period)


def _presets(partner: Partner, period: Period | None, extra: dict[str, str]) -> list[dict]:
    today = clock.now().astimezone(period.zone if period else _zone(partner)).date()
    presets = []
    for days in PRESETS:
        start = today - dt.timedelta(days=days - 1)
        presets.append(
            {
                "label": f"Last {days} days",
                "query": urlencode({"start": start, "end": today, **extra}),
                "current": period is not None and (period.start, period.end) == (start, today),
            }
        )
    return presets


def _zone(partner: Partner) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(partner.timezone)


# --- Sorting -------------------------------------------------------------------------------


def _sorted(rows: list[Any], columns: list[Column], sort: str) -> tuple[list[Any], str]:
    """``rows`` by ``sort`` (``key`` or ``-key``); empty values last either way.

    An unknown key leaves the selector's order (and is answered as no sort).
    """
    key = sort.removeprefix("-")
    column = next((c for c in columns if c.key == key), None)
    if column is None or column.value is None:
        return rows, ""
    descending = sort.startswith("-")
    present = [r for r in rows if column.value(r) is not None]
    missing = [r for r in rows if column.value(r) is None]
    present.sort(key=column.value, reverse=descending)
    return present + missing, sort


# --- Formatting ---------------------------------------------------------------------------


def _int(value: int | None) -> str:
    return DASH if value is None else f"{value:,}"


def percent_text(value: float | None) -> str:
    """A rate as the pages show it ("42.3 %"; a dash when undefined)."""
    return DASH if value is None else f"{value * 100:.1f}\u00a0%"


def _totals_view(m: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The headline figures: (label, value, explanation)."""
    return [
        ("Messages sent", _int(m["messages_sent"]), ""),
        ("Messages received", _int(m["messages_received"]), ""),
        ("New conversations", _int(m["new_conversations"]), "started by an outbound message"),
        ("Responded conversations", _int(m["responded_conversations"]), ""),
        ("Response rate", percent_text(m["response_rate"]), "responded ÷ new"),
        ("Inbound conversations", _int(m["inbound_conversations"]), "the contact wrote first"),
        (
            "Volume limit usage",
            percent_text(m["volume_limit_usage"]),
            "new conversations ÷ daily limits of active lines",
        ),
        (
            "Over-pressured line-days",
            _int(m["over_pressured_line_days"]),
            "a line at 100 % of its daily limit or more",
        ),
    ]


def _charts(days: list[dict[str, Any]], period: Period) -> dict[str, Any]:
    """What the charts draw (a JSON data block) and the same numbers as tables."""
    data = {
        "days": [d["day"].isoformat() for d in days],
        "sent": [d["messages_sent"] for d in days],
        "received": [d["messages_received"] for d in days],
        "new": [d["new_conversations"] for d in days],
        "responded": [d["responded_conversations"] for d in days],
        "usage": [
            None if d["volume_limit_usage"] is None else round(d["volume_limit_usage"] * 100, 1)
            for d in days
        ],
    }
    rows = [
        {
            "day": d["day"],
            # Formatted once here, not in each of the three tables (date formatting
            # goes through translations on every call).
            "label": date_format(d["day"], "D j M"),
            "sent": _int(d["messages_sent"]),
            "received": _int(d["messages_received"]),
            "new": _int(d["new_conversations"]),
            "responded": _int(d["responded_conversations"]),
            "usage": percent_text(d["volume_limit_usage"]),
            "over": _int(d["over_pressured_line_days"]),
        }
        for d in days
    ]
    span = f"{period.start:%-d %b %Y} to {period.end:%-d %b %Y}"
    quiet = not any(d["messages_sent"] or d["messages_received"] for d in days)
    return {"data": data, "rows": rows, "span": span, "quiet": quiet}


def _number(value: float | int | None) -> str:
    """A CSV number cell: plain digits (rates as fractions such as 0.4231), empty for none."""
    return "" if value is None else str(value)


def _page_query(base: dict[str, str]) -> str:
    return (urlencode(base) + "&") if base else ""


# --- Overview ----------------------------------------------------------------------------

# Sorted by the database (``selectors.COMPARISON_SORTS`` holds the same keys).
COMPARISON_COLUMNS = [
    Column("name", "Sub-account", numeric=False),
    Column("messages_sent", "Sent"),
    Column("messages_received", "Received"),
    Column("new_conversations", "New conv."),
    Column("responded_conversations", "Responded"),
    Column("inbound_conversations", "Inbound conv."),
    Column("response_rate", "Response rate"),
    Column("volume_limit_usage", "Volume limit usage"),
    Column("over_pressured_line_days", "Over-pressured line-days"),
    Column("flags", "Flags"),
]


def _comparison_sort(request: HttpRequest) -> str:
    """The comparison's sort from the query (``key`` or ``-key``); "" when unknown."""
    sort = request.GET.get("sort", "")
    keys = {c.key for c in COMPARISON_COLUMNS}
    return sort if sort.removeprefix("-") in keys else ""


def _comparison(
    request: HttpRequest, rng: Range, sort: str, *, offset: int = 0, limit: int | None = None
) -> selectors.AnalyticsList:
    """The comparison sorted (and paged) by the database: see the selector."""
    assert rng.period is not None
    return selectors.sub_account_analytics_list(
        principal=request.principal,  # type: ignore[attr-defined]
        start=rng.period.start,
        end=rng.period.end,
        sort=sort,
        offset=offset,
        limit=limit,
    )


def _comparison_page(
    request: HttpRequest, rng: Range, sort: str
) -> tuple[selectors.AnalyticsList, Page]:
    """The requested page of the comparison (the first for a bad number, the last for one
    past the end, as ``Paginator.get_page``); only that page's rows are read."""
    raw = request.GET.get("page")
    try:
        wanted = max(1, int(raw)) if raw else 1
    except ValueError:
        wanted = 1
    listing = _comparison(request, rng, sort, offset=(wanted - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    paginator = Paginator(range(listing.count), PAGE_SIZE)
    number = paginator.get_page(raw).number
    if number != wanted:  # past the end (or not a page at all): read the page shown
        listing = _comparison(request, rng, sort, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return listing, Page(listing.rows, number, paginator)


def _bad_range(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    return render(request, template, context, status=400)


@portal_view
def analytics_overview(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    rng = _range(request, partner_for(principal))
    context: dict[str, Any] = {
        "active_section": "analytics",
        "analytics_tab": "overview",
        # Alerts are the partner's as a whole: not a tab for a partner's client.
        "show_analytics_tabs": can_read_partner_areas(principal),
        "form": rng.form,
    }
    if rng.period is None:
        context["presets"] = _presets(rng.partner, None, {})
        return _bad_range(request, "analytics/overview.html", context)
    sort = _comparison_sort(request)
    listing, page_obj = _comparison_page(request, rng, sort)
    period = listing.period
    show_capacity = can_read_capacity_advice(principal)
    advised = (
        advice.capacity_advice(
            principal=principal,
            period=period,
            target=advice.DEFAULT_TARGET,
            sub_account_ids=[r["sub_account_id"] for r in page_obj],
        )
        if show_capacity
        else {}
    )
    may_move = can_change_lines(principal)
    daily = reports.partner_analytics_daily(principal=principal, period=period)
    dates = {"start": period.start.isoformat(), "end": period.end.isoformat()}
    with_sort = {**dates, **({"sort": sort} if sort else {})}
    context.update(
        {
            "period": period,
            "timezone": rng.partner.timezone,
            "presets": _presets(rng.partner, period, {"sort": sort} if sort else {}),
            "totals": _totals_view(daily["totals"]),
            "charts": _charts(daily["days"], period),
            "median": percent_text(listing.median),
            "headers": _headers(COMPARISON_COLUMNS, sort, dates),
            "page_obj": page_obj,
            "rows": [
                {
                    **_comparison_row(r),
                    "capacity": _capacity_cell(
                        advised.get(r["sub_account_id"]), may_move, urlencode(dates)
                    ),
                }
                for r in page_obj
            ],
            "capacity_target": percent_text(float(advice.DEFAULT_TARGET)),
            "show_capacity": show_capacity,
            "row_count": listing.count,
            "dates_query": urlencode(dates),
            "csv_query": urlencode(with_sort),
            "query_prefix": _page_query(with_sort),
        }
    )
    return render(request, "analytics/overview.html", context)


def _comparison_row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "sub_account_id": r["sub_account_id"],
        "name": r["name"],
        "messages_sent": _int(r["messages_sent"]),
        "messages_received": _int(r["messages_received"]),
        "new_conversations": _int(r["new_conversations"]),
        "responded_conversations": _int(r["responded_conversations"]),
        "inbound_conversations": _int(r["inbound_conversations"]),
        "response_rate": percent_text(r["response_rate"]),
        "volume_limit_usage": percent_text(r["volume_limit_usage"]),
        "over_pressured_line_days": _int(r["over_pressured_line_days"]),
        "flags": [(f, FLAG_LABELS.get(f, f)) for f in r["flags"]],
    }


def _lines(count: int) -> str:
    return f"{count:,} line{'s' if count != 1 else ''}"


def _capacity_cell(
    a: advice.CapacityAdvice | None, may_move: bool, dates_query: str
) -> dict[str, Any] | None:
    """The comparison's capacity advice for one row (None for Available): what to do, the
    idle lines, and the Move dialog with the lines it names (for people who move lines)."""
    if a is None:
        return None
    if a.suggested_change > 0:
        text, action = f"Add {_lines(a.suggested_change)}", "add"
    elif a.suggested_change < 0:
        text, action = f"Return {_lines(-a.suggested_change)}", "return"
    else:
        text, action = "Keep as is", ""
    link = ""
    if action and may_move:
        link = reverse("analytics:capacity_move", args=[a.sub_account_id]) + "?" + dates_query
    return {
        "text": text,
        "action": action,
        "link": link,
        "idle": f"{a.idle_lines:,} idle" if a.idle_lines else "",
        "busiest": percent_text(a.busiest_day_usage),
    }


@portal_view
def capacity_move(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """The Move dialog with the lines a row's capacity advice names: the lines it would
    return to Available, or lines from Available to add, the destination chosen."""
    principal = request.principal  # type: ignore[attr-defined]
    require(can_change_lines(principal), "Your role may not move lines.")
    rng = _range(request, partner_for(principal))
    if rng.period is None:
        raise Invalid("Choose a valid date range first.", field="start")
    target = advice.clean_target(request.GET.get("target") or advice.DEFAULT_TARGET)
    move = advice.capacity_advice_move(
        principal=principal, sub_account_id=sub_account_id, period=rng.period, target=target
    )
    a = move.advice
    at = f"at or under {percent_text(float(target))}"
    busiest = (
        f"its busiest day ({a.busiest_day:%-d %b}, {a.busiest_day_new:,} new conversations) "
        if a.busiest_day
        else "its busiest day "
    )
    if a.suggested_change > 0:
        note = f"To keep {busiest}{at}, {a.name} needs {_lines(a.suggested_change)} more."
        if move.short_by:
            note += f" Available has {_lines(len(move.line_ids))}: request {move.short_by:,} more."
    elif a.suggested_change < 0:
        idle = min(a.idle_lines, len(move.line_ids))
        note = (
            f"{a.name} could return {_lines(-a.suggested_change)} to Available and still keep "
            f"{busiest}{at}"
            + (f"; {idle:,} of them sent and received nothing in the period." if idle else ".")
        )
    else:
        note = f"{a.name} has the lines it needs: nothing to move."
    return bulk_move_dialog(
        request,
        line_ids=[str(pk) for pk in move.line_ids],
        seen=move.seen,
        destination=move.destination_id,
        note=note,
    )


COMPARISON_CSV_HEADER = [
    "start",
    "end",
    "sub_account_id",
    "sub_account",
    "messages_sent",
    "messages_received",
    "new_conversations",
    "responded_conversations",
    "inbound_conversations",
    "response_rate",
    "volume_limit_usage",
    "active_line_days",
    "near_limit_line_days",
    "over_pressured_line_days",
    "flags",
]


@portal_view
def comparison_csv(request: HttpRequest) -> HttpResponse:
    """The comparison table, every sub-account, in the page's order."""
    principal = request.principal  # type: ignore[attr-defined]
    rng = _range(request, partner_for(principal))
    if rng.period is None:
        context = {
            "active_section": "analytics",
            "form": rng.form,
            "presets": _presets(rng.partner, None, {}),
        }
        return _bad_range(request, "analytics/overview.html", context)
    listing = _comparison(request, rng, _comparison_sort(request))
    period = listing.period
    out = [COMPARISON_CSV_HEADER]
    for r in listing.rows:
        out.append(
            [
                period.start.isoformat(),
                period.end.isoformat(),
                str(r["sub_account_id"]),
                csv_safe(r["name"]),
                *(
                    _number(r[name])
                    for name in COMPARISON_CSV_HEADER[4:-1]  # the counts and rates
                ),
                ";".join(r["flags"]),
            ]
        )
    return csv_response(f"analytics-sub-accounts-{period.start}-to-{period.end}.csv", out)


# --- One sub-account -----------------------------------------------------------------------

LINE_COLUMNS = [
    Column("number", "Number", lambda u: u.number, numeric=False),
    Column("label", "Label", lambda u: u.label.casefold(), numeric=False, hide_sm=True),
    Column("daily_limit", "Daily limit", lambda u: u.daily_limit),
    Column("messages_sent", "Sent", lambda u: u.messages_sent),
    Column("messages_received", "Received", lambda u: u.messages_received),
    Column("new_conversations", "New conv.", lambda u: u.new_conversations),
    Column("average_usage", "Avg. usage", lambda u: u.average_usage),
    Column("peak_usage", "Peak usage", lambda u: u.peak_usage),
    Column("near_limit_line_days", "Days ≥ 90 %", lambda u: u.near_limit_line_days),
    Column("over_pressured_line_days", "Days ≥ 100 %", lambda u: u.over_pressured_line_days),
]


@dataclass
class SubAccountRange:
    rng: Range
    sub_account: SubAccount


def _sub_account_range(request: HttpRequest, sub_account_id: int) -> SubAccountRange:
    principal = request.principal  # type: ignore[attr-defined]
    # Another partner's sub-account is a 404 before anything about the dates.
    sub_account = SubAccount.objects.get_visible(principal, sub_account_id, what="Sub-account")
    rng = _range(request, Partner.objects.get(pk=sub_account.partner_id))
    return SubAccountRange(rng, sub_account)


def _line_usage(request: HttpRequest, sar: SubAccountRange) -> tuple[list[Any], str]:
    assert sar.rng.period is not None
    rows = reports.line_usage(
        principal=request.principal,  # type: ignore[attr-defined]
        sub_account_id=sar.sub_account.pk,
        period=sar.rng.period,
    )
    return _sorted(rows, LINE_COLUMNS, request.GET.get("sort", ""))


def _sub_account_context(request: HttpRequest, sar: SubAccountRange) -> dict[str, Any]:
    merged_into = None
    if sar.sub_account.status == SubAccountStatus.MERGED and sar.sub_account.merged_into_id:
        # Named only to whoever sees it: access never follows a merge by itself.
        merged_into = (
            SubAccount.objects.visible_to(request.principal)  # type: ignore[attr-defined]
            .filter(pk=sar.sub_account.merged_into_id)
            .values("pk", "name")
            .first()
        )
    return {
        "active_section": "analytics",
        "form": sar.rng.form,
        "sub_account": sar.sub_account,
        "merged_into": merged_into,
    }


def sub_account_analytics_context(
    request: HttpRequest, sub_account: SubAccount
) -> tuple[dict[str, Any], int]:
    """What ``analytics/_sub_account_body.html`` shows of ``sub_account`` (read by a scoped
    selector) for the period the request asks, and the status to answer (400 for dates
    that cannot be read): its Analytics page and the Analytics tab of its workspace."""
    principal = request.principal  # type: ignore[attr-defined]
    sar = SubAccountRange(_range(request, sub_account.partner), sub_account)
    context = _sub_account_context(request, sar)
    period = sar.rng.period
    if period is None:
        context["presets"] = _presets(sar.rng.partner, None, {})
        return context, 400
    data = selectors.sub_account_analytics(
        principal=principal, sub_account_id=sar.sub_account.pk, start=period.start, end=period.end
    )
    members = selectors.analytics_members(sar.sub_account.partner_id, sar.sub_account.pk)
    lines, sort = _line_usage(request, sar)
    dates = {"start": period.start.isoformat(), "end": period.end.isoformat()}
    with_sort = {**dates, **({"sort": sort} if sort else {})}
    page_obj = Paginator(lines, PAGE_SIZE).get_page(request.GET.get("page"))
    context.update(
        {
            "period": period,
            "timezone": sar.rng.partner.timezone,
            "presets": _presets(sar.rng.partner, period, {"sort": sort} if sort else {}),
            "merged_count": len(members) - 1,
            "totals": _totals_view(data["totals"]),
            "charts": _charts(data["days"], period),
            "headers": _headers(LINE_COLUMNS, sort, dates),
            "page_obj": page_obj,
            "lines": [_line_row(u) for u in page_obj],
            "line_count": len(lines),
            "dates_query": urlencode(dates),
            "csv_query": urlencode(with_sort),
            "query_prefix": _page_query(with_sort),
        }
    )
    return context, 200


@portal_view
def sub_account_analytics(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    # Another partner's sub-account is a 404 before anything about the dates.
    sub_account = SubAccount.objects.get_visible(principal, sub_account_id, what="Sub-account")
    context, status = sub_account_analytics_context(request, sub_account)
    return render(request, "analytics/sub_account.html", context, status=status)


def _line_row(u: reports.LineUsage) -> dict[str, Any]:
    return {
        # No break inside a number: "+1 415 555 0100" stays on one line.
        "number": display_number(u.number).replace(" ", "\u00a0"),
        "label": u.label,
        "daily_limit": _int(u.daily_limit),
        "messages_sent": _int(u.messages_sent),
        "messages_received": _int(u.messages_received),
        "new_conversations": _int(u.new_conversations),
        "average_usage": percent_text(u.average_usage),
        "peak_usage": percent_text(u.peak_usage),
        "near_limit_line_days": _int(u.near_limit_line_days),
        "over_pressured_line_days": _int(u.over_pressured_line_days),
    }


LINES_CSV_HEADER = [
    "start",
    "end",
    "sub_account",
    "line_id",
    "number",
    "label",
    "daily_limit",
    "messages_sent",
    "messages_received",
    "new_conversations",
    "active_line_days",
    "average_usage",
    "peak_usage",
    "days_at_90_percent",
    "days_at_100_percent",
]


@portal_view
def line_usage_csv(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """Per-line usage of one sub-account, every line, in the page's order."""
    sar = _sub_account_range(request, sub_account_id)
    period = sar.rng.period
    if period is None:
        context = _sub_account_context(request, sar)
        context["presets"] = _presets(sar.rng.partner, None, {})
        return _bad_range(request, "analytics/sub_account.html", context)
    lines, _sort = _line_usage(request, sar)
    name = csv_safe(sar.sub_account.display_name)
    out = [LINES_CSV_HEADER]
    for u in lines:
        out.append(
            [
                period.start.isoformat(),
                period.end.isoformat(),
                name,
                str(u.line_id),
                csv_safe(u.number),
                csv_safe(u.label),
                _number(u.daily_limit),
                _number(u.messages_sent),
                _number(u.messages_received),
                _number(u.new_conversations),
                _number(u.active_line_days),
                _number(u.average_usage),
                _number(u.peak_usage),
                _number(u.near_limit_line_days),
                _number(u.over_pressured_line_days),
            ]
        )
    filename = f"analytics-lines-{sar.sub_account.pk}-{period.start}-to-{period.end}.csv"
    return csv_response(filename, out)
