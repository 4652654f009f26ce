"""Writes for lines, orders and inventory: one function per change.

Every change of a line's sub-account (assign, move, bulk move, disconnect) checks and
locks here, then hands the lines to the one relocation, ``lines.relocation``:
set-based, one statement per step whatever the number of lines, in one transaction,
with one audit event per line changed (assign and disconnect record their own). Locks
follow the one order of docs/architecture.md ("Locks"): the lines in id order, then
the sub-accounts they touch in id order, all ``FOR NO KEY UPDATE`` (no key ever
changes, and the foreign-key checks of rows inserted meanwhile, ingestion's rollups
among them, need not wait); on SQLite the IMMEDIATE transaction serialises writers. A
transaction the database still ends as a race's loser is run again
(``retry_on_lost_race``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef

from portal.accounts.policies import can_manage_inventory, require, require_partner_area
from portal.audit.services import Change, audit_record, audit_record_many
from portal.core import clock
from portal.core.bulk import chunks
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.phone import area_code_of, normalize_e164
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.core.tenancy import db_id
from portal.core.text import clean_email, clean_text
from portal.lines.limits import line_limits_set
from portal.lines.models import (
    OPEN_ORDER_STATUSES,
    AssignmentPeriod,
    InventoryNumber,
    InventoryStatus,
    Line,
    LineOrder,
    LineOrderStatus,
    LineStatus,
)
from portal.lines.policies import can_cancel_order, can_change_lines, can_order_lines
from portal.lines.relocation import lines_relocate
from portal.lines.selectors import line_whereabouts
from portal.partners.models import Partner, SubAccount, SubAccountKind
from portal.partners.policies import ensure_can_hold_lines, ensure_unlocked
from portal.partners.selectors import available_pool, partner_for
from portal.partners.services import sub_accounts_lock

MAX_BULK_MOVE = 100_000


def _target_sub_account(principal: Principal, partner_id: int, sub_account_id: Any) -> SubAccount:
    """The sub-account lines of ``partner_id`` go to, among those the principal sees."""
    target = (
        SubAccount.objects.visible_to(principal)
        .filter(partner_id=partner_id)
        .filter_id("pk", sub_account_id)
        .first()
    )
    if target is None:
        raise NotFound(f"Sub-account {sub_account_id} not found.")
    return target


def _lock_line(principal: Principal, line_id: Any) -> Line:
    lines = Line.objects.visible_to(principal).select_for_update(no_key=True)
    line = lines.filter(pk=_as_id(line_id)).first()
    if line is None:
        raise NotFound(f"Line {line_id} not found.")
    return line


def _as_id(value: Any) -> int:
    key = db_id(value)
    if key is None:
        raise NotFound(f"{value!r} is not an id.")
    return key


def _as_sub_account_id(value: Any) -> int:
    """An id the caller says a line is in; one that cannot be an id is simply not found."""
    key = db_id(value)
    if key is None:
        raise NotFound(f"Sub-account {value} not found.")
    return key


def _ensure_still_where_seen(
    principal: Principal, lines: Sequence[Line], seen_in: Mapping[int, int]
) -> None:
    """Refuse (409) when a locked line is no longer in the sub-account the caller saw it in.

    ``seen_in`` maps line id -> sub-account id (lines it does not name are not checked).
    The lines are already locked, so their ``sub_account_id`` is the committed truth and
    nobody can move them before this transaction ends: the check and the move are one.
    A sub-account the caller cannot see is answered like a missing one (404, the tenant
    wall); it is looked up only when a line is not there, since a line the caller can
    see is in a sub-account it can see.
    """
    stale = [
        line for line in lines if line.pk in seen_in and line.sub_account_id != seen_in[line.pk]
    ]
    if not stale:
        return
    seen_ids = {seen_in[line.pk] for line in stale}
    seen_names = {
        sa.pk: sa.display_name
        for sa in SubAccount.objects.visible_to(principal)
        .filter(pk__in=seen_ids)
        .only("pk", "name", "kind")
    }
    unknown = sorted(seen_ids - seen_names.keys())
    if unknown:
        raise NotFound(f"Sub-account {unknown[0]} not found.")
    shown = stale[:5]
    where = line_whereabouts(principal, shown)
    reasons = [
        f"Line {line.number} is no longer in “{seen_names[seen_in[line.pk]]}”: {where[line.pk]}"
        for line in shown
    ]
    if len(lines) == 1:
        raise Conflict(f"{reasons[0]}. Reload and try again.")
    more = f"; and {len(stale) - len(shown)} more" if len(stale) > len(shown) else ""
    raise Conflict(
        f"{len(stale)} of the {len(lines)} lines moved since you saw them, so none was moved. "
        f"{'; '.join(reasons)}{more}. Reload and try again."
    )


def _ensure_active(line: Line) -> None:
    if line.status != LineStatus.ACTIVE:
        raise Conflict(f"Line {line.number} is disconnected.")


def _clean_line_details(
    *, partner: Partner, label: Any, user_name: Any, user_email: Any, daily_limit: Any
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if label is not None:
        details["label"] = clean_text(label, field="label", label="Label", max_length=120)
    if user_name is not None:
        details["user_name"] = clean_text(
            user_name, field="user_name", label="User name", max_length=120
        )
    if user_email is not None:
        details["user_email"] = clean_email(user_email, field="user_email", label="User email")
    if daily_limit is not None:
        if isinstance(daily_limit, bool) or not isinstance(daily_limit, int):
            raise Invalid("Daily limit must be a whole number.", field="daily_limit")
        if not 1 <= daily_limit <= 100_000:
            raise Invalid("Daily limit must be between 1 and 100000.", field="daily_limit")
        details["daily_limit"] = daily_limit
    return details


@retry_on_lost_race
@transaction.atomic
def line_assign(
    *,
    principal: Principal,
    line_id: Any,
    sub_account_id: Any,
    label: str,
    user_name: str | None = None,
    user_email: str | None = None,
    daily_limit: int | None = None,
) -> Line:
    """Take a line from Available into a standard sub-account with its details."""
    require(can_change_lines(principal), "Your role may not assign lines.")
    line = _lock_line(principal, line_id)
    partner = Partner.objects.get(pk=line.partner_id)
    details = _clean_line_details(
        partner=partner,
        label=label,
        user_name=user_name,
        user_email=user_email,
        daily_limit=daily_limit,
    )
    if not details.get("label"):
        raise Invalid("Label is required.", field="label")
    details.setdefault("daily_limit", partner.default_daily_limit)
    target = _target_sub_account(principal, line.partner_id, sub_account_id)
    _ensure_active(line)
    locked = sub_accounts_lock([line.sub_account_id, target.pk])
    source, target = locked[line.sub_account_id], locked[target.pk]
    if source.kind != SubAccountKind.AVAILABLE:
        where = line_whereabouts(principal, [line])[line.pk]
        raise Conflict(
            f"Line {line.number} is not in Available any more: {where}. "
            "Reload and try again (Move changes the sub-account of a line in use)."
        )
    if target.kind != SubAccountKind.STANDARD:
        raise Conflict("Choose a sub-account to add the line to, not the Available pool.")
    ensure_unlocked(source)
    ensure_can_hold_lines(target)
    at = lines_relocate(
        principal=principal,
        partner_id=line.partner_id,
        lines=[(line.pk, source.pk, line.number)],
        target=target,
    ).at
    before = {k: getattr(line, k) for k in details}
    # Limit history (analytics), before the update that also writes the same limit.
    line_limits_set(
        partner_id=line.partner_id, line_ids=[line.pk], daily_limit=details["daily_limit"], at=at
    )
    Line.objects.filter(pk=line.pk).update(**details)
    audit_record(
        principal=principal,
        partner_id=line.partner_id,
        action="line.assign",
        object_type="line",
        object_id=line.pk,
        line_id=line.pk,
        sub_account_id=source.pk,
        other_sub_account_id=target.pk,
        at=at,
        data={
            "number": line.number,
            "before": {"sub_account_id": source.pk, **before},
            "after": {"sub_account_id": target.pk, **details},
        },
    )
    line.refresh_from_db()
    return line


@retry_on_lost_race
@transaction.atomic
def line_update(
    *,
    principal: Principal,
    line_id: Any,
    label: str | None = None,
    user_name: str | None = None,
    user_email: str | None = None,
    daily_limit: int | None = None,
    notes: str | None = None,
) -> Line:
    """Change a line's details (not its sub-account)."""
    require(can_change_lines(principal), "Your role may not change lines.")
    line = _lock_line(principal, line_id)
    _ensure_active(line)
    partner = Partner.objects.get(pk=line.partner_id)
    details = _clean_line_details(
        partner=partner,
        label=label,
        user_name=user_name,
        user_email=user_email,
        daily_limit=daily_limit,
    )
    if notes is not None:
        details["notes"] = clean_text(
            notes, field="notes", label="Notes", max_length=5000, multiline=True
        )
    changed = {k: v for k, v in details.items() if getattr(line, k) != v}
    if not changed:
        return line
    before = {k: getattr(line, k) for k in changed}
    if "daily_limit" in changed:  # limit history (analytics), before the update
        line_limits_set(
            partner_id=line.partner_id,
            line_ids=[line.pk],
            daily_limit=changed["daily_limit"],
            at=clock.now(),
        )
    Line.objects.filter(pk=line.pk).update(**changed)
    audit_record(
        principal=principal,
        partner_id=line.partner_id,
        action="line.update",
        object_type="line",
        object_id=line.pk,
        line_id=line.pk,
        sub_account_id=line.sub_account_id,
        data={"number": line.number, "before": before, "after": changed},
    )
    line.refresh_from_db()
    return line


@retry_on_lost_race
def line_move(
    *,
    principal: Principal,
    line_id: Any,
    sub_account_id: Any,
    from_sub_account_id: Any = None,
) -> Line:
    """Move one active line to another sub-account (standard, or back to Available).

    With ``from_sub_account_id`` (where the caller saw the line) the move happens only
    if the line is still there: otherwise 409 saying where it went and when, checked
    under the line's lock so two moves from one stale view cannot both win.
    """
    with transaction.atomic():
        require(can_change_lines(principal), "Your role may not move lines.")
        line = _lock_line(principal, line_id)
        if from_sub_account_id is not None:
            seen = _as_sub_account_id(from_sub_account_id)
            _ensure_still_where_seen(principal, [line], {line.pk: seen})
        _ensure_active(line)
        if str(line.sub_account_id) == str(sub_account_id):
            raise Conflict(f"Line {line.number} is already in that sub-account.")
        _move_locked(
            principal=principal,
            partner_id=line.partner_id,
            lines=[line],
            sub_account_id=sub_account_id,
        )
    line.refresh_from_db()
    return line


@dataclass(frozen=True, slots=True)
class BulkMoveResult:
    moved: int
    already_there: int
    line_ids: list[int] = field(default_factory=list)


@retry_on_lost_race
@transaction.atomic
def line_move_bulk(
    *,
    principal: Principal,
    line_ids: Sequence[Any],
    sub_account_id: Any,
    from_sub_account_id: Any = None,
    seen_in: Mapping[Any, Any] | None = None,
) -> BulkMoveResult:
    """Move many lines at once, all or nothing.

    Every id must name an active line of the principal's partner; lines already in
    the target are left as they are (and counted apart). ``from_sub_account_id`` (the
    API's precondition) requires every line to be in that sub-account still;
    ``seen_in`` (line id -> sub-account id, from a page whose selection spans
    sub-accounts) requires each line it names to be where the page showed it. Either
    way one line elsewhere refuses the whole move (409), checked on the locked rows.
    """
    require(can_change_lines(principal), "Your role may not move lines.")
    if not line_ids:
        raise Invalid("Choose at least one line to move.", field="line_ids")
    if len(line_ids) > MAX_BULK_MOVE:
        raise Invalid(f"At most {MAX_BULK_MOVE} lines move at once.", field="line_ids")
    wanted = sorted({_as_id(i) for i in line_ids})
    lines: list[Line] = []
    for chunk in chunks(wanted):
        lines.extend(
            Line.objects.visible_to(principal)
            .select_for_update(no_key=True)
            .filter(pk__in=chunk)
            .order_by("pk")
            .only("pk", "partner_id", "number", "status", "sub_account_id", "disconnected_at")
        )
    found = {line.pk for line in lines}
    missing = [i for i in wanted if i not in found]
    if missing:
        shown = ", ".join(map(str, missing[:10]))
        raise NotFound(f"Lines not found: {shown}{' …' if len(missing) > 10 else ''}.")
    partners = {line.partner_id for line in lines}
    if len(partners) != 1:
        raise Invalid("Lines of several partners cannot move together.", field="line_ids")
    if from_sub_account_id is not None:
        expected = dict.fromkeys(wanted, _as_sub_account_id(from_sub_account_id))
    else:
        expected = {
            _as_id(line_id): _as_sub_account_id(seen) for line_id, seen in (seen_in or {}).items()
        }
    if expected:
        _ensure_still_where_seen(principal, lines, expected)
    disconnected = [line.number for line in lines if line.status != LineStatus.ACTIVE]
    if disconnected:
        raise Conflict(f"Disconnected lines cannot move: {', '.join(disconnected[:10])}.")
    target_key = str(sub_account_id)
    to_move = [line for line in lines if str(line.sub_account_id) != target_key]
    if to_move:
        _move_locked(
            principal=principal,
            partner_id=partners.pop(),
            lines=to_move,
            sub_account_id=sub_account_id,
        )
    else:
        # 404 for an unknown target
        _target_sub_account(principal, lines[0].partner_id, sub_account_id)
    return BulkMoveResult(
        moved=len(to_move),
        already_there=len(lines) - len(to_move),
        line_ids=[line.pk for line in to_move],
    )


def _move_locked(
    *, principal: Principal, partner_id: int, lines: Sequence[Line], sub_account_id: Any
) -> None:
    """Move already-locked active lines of one partner; checks the sub-accounts' locks."""
    target = _target_sub_account(principal, partner_id, sub_account_id)
    locked = sub_accounts_lock([*(line.sub_account_id for line in lines), target.pk])
    target = locked[target.pk]
    ensure_can_hold_lines(target)
    for source_id in {line.sub_account_id for line in lines}:
        ensure_unlocked(locked[source_id])
    lines_relocate(
        principal=principal,
        partner_id=partner_id,
        lines=[(line.pk, line.sub_account_id, line.number) for line in lines],
        target=target,
        action="line.move",
    )


@retry_on_lost_race
def line_disconnect(*, principal: Principal, line_id: Any) -> Line:
    """End a line for good. Its history stays; its number may be sold again later."""
    with transaction.atomic():
        require(can_change_lines(principal), "Your role may not disconnect lines.")
        line = _lock_line(principal, line_id)
        _ensure_active(line)
        source = sub_accounts_lock([line.sub_account_id])[line.sub_account_id]
        ensure_unlocked(source)
        at = lines_relocate(
            principal=principal,
            partner_id=line.partner_id,
            lines=[(line.pk, source.pk, line.number)],
            target=None,
        ).at
        audit_record(
            principal=principal,
            partner_id=line.partner_id,
            action="line.disconnect",
            object_type="line",
            object_id=line.pk,
            line_id=line.pk,
            sub_account_id=source.pk,
            at=at,
            data={
                "number": line.number,
                "before": {"status": LineStatus.ACTIVE, "sub_account_id": source.pk},
                "after": {"status": LineStatus.DISCONNECTED, "sub_account_id": None},
            },
        )
    line.refresh_from_db()
    return line


# --- Orders and inventory -------------------------------------------------------------


def _clean_area_code(value: Any) -> str:
    text = str(value or "").strip()
    if text and (not (text.isascii() and text.isdigit()) or not 2 <= len(text) <= 5):
        raise Invalid(f"Area code {text[:10]!r} must be 2 to 5 digits.", field="area_code")
    return text


SUBMISSION_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


@retry_on_lost_race
@transaction.atomic
def line_order_create(
    *,
    principal: Principal,
    quantity: Any,
    area_code: Any = None,
    submission_key: str | None = None,
) -> LineOrder:
    """Request new lines for the principal's partner (staff: the one they act for);
    fulfilled at once from stock, else when inventory arrives.

    ``submission_key`` (the page form's one-time key) makes the request once: posting the
    same form again (a double click, a browser's resubmit) returns the order it made,
    marked ``replayed``, and changes nothing.
    """
    require(can_order_lines(principal), "Your role may not request lines.")
    partner = partner_for(principal)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise Invalid("Quantity must be a whole number.", field="quantity")
    if not 1 <= quantity <= 1000:
        raise Invalid("Quantity must be between 1 and 1000.", field="quantity")
    key = submission_key or ""
    if key and not SUBMISSION_KEY.fullmatch(key):
        raise Invalid("The form is out of date; reload the page and send it again.")
    if key:
        made = _order_of_submission(principal, key)
        if made is not None:
            return made
    try:
        with transaction.atomic():
            order = LineOrder.objects.create(
                partner=partner,
                quantity=quantity,
                area_code=_clean_area_code(area_code),
                requested_by=principal.label[:200],
                submission_key=key,
                created_at=clock.now(),
            )
    except IntegrityError:
        # The same form posted twice at once: the other post made the order.
        made = _order_of_submission(principal, key) if key else None
        if made is None:
            raise
        return made
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="line_order.create",
        object_type="line_order",
        object_id=order.pk,
        data={"after": {"quantity": quantity, "area_code": order.area_code}},
    )
    line_orders_fulfil(principal=principal)
    order.refresh_from_db()
    return order


def _order_of_submission(principal: Principal, key: str) -> LineOrder | None:
    order = LineOrder.objects.visible_to(principal).filter(submission_key=key).first()
    if order is not None:
        order.replayed = True  # type: ignore[attr-defined]
    return order


@retry_on_lost_race
@transaction.atomic
def line_order_cancel(*, principal: Principal, order_id: Any) -> LineOrder:
    require_partner_area(principal)  # a client has no orders: 403, whatever the id
    order = (
        LineOrder.objects.visible_to(principal)
        .select_for_update(no_key=True)
        .filter(pk=_as_id(order_id))
        .first()
    )
    if order is None:
        raise NotFound(f"Line order {order_id} not found.")
    require(can_order_lines(principal), "Your role may not cancel line orders.")
    require(
        can_cancel_order(principal, order),
        "Only provider staff can cancel an order once lines were delivered.",
    )
    if order.status not in OPEN_ORDER_STATUSES:
        raise Conflict(f"Order {order.pk} is {order.get_status_display().lower()}.")
    before = order.status
    order.status = LineOrderStatus.CANCELLED
    order.save(update_fields=["status", "updated_at"])
    audit_record(
        principal=principal,
        partner_id=order.partner_id,
        action="line_order.cancel",
        object_type="line_order",
        object_id=order.pk,
        data={"before": {"status": before}, "after": {"status": order.status}},
    )
    return order


def line_orders_fulfil(*, principal: Principal) -> int:
    """Give waiting orders numbers from stock, oldest order first. Returns lines created.

    Called inside the transaction of whatever made stock or demand appear.
    """
    created = 0
    orders = list(
        LineOrder.objects.select_for_update(no_key=True)
        .filter(status__in=OPEN_ORDER_STATUSES)
        .order_by("created_at", "pk")
    )
    # Fulfilling another partner's waiting order (oldest first, whoever made stock or
    # demand appear) is the platform's doing in that partner's records: its audit log must
    # never name a person or key of another partner.
    platform = Principal.system("task:order-fulfilment")
    for order in orders:
        own = principal.is_staff or principal.scope_partner_id == order.partner_id
        created += _fulfil_order(principal=principal if own else platform, order=order)
    return created


def _fulfil_order(*, principal: Principal, order: LineOrder) -> int:
    need = order.quantity - order.fulfilled_count
    stock = InventoryNumber.objects.select_for_update(no_key=True).filter(
        status=InventoryStatus.IN_STOCK
    )
    if order.area_code:
        stock = stock.filter(area_code=order.area_code)
    # NOT EXISTS probes the unique index on active numbers per candidate, instead of
    # materialising every active number on the platform.
    stock = stock.exclude(
        Exists(Line.objects.filter(status=LineStatus.ACTIVE, number=OuterRef("number")))
    )
    numbers = list(stock.order_by("pk")[:need])
    if not numbers:
        return 0
    partner = Partner.objects.get(pk=order.partner_id)
    pool = available_pool(partner.pk)
    at = clock.now()
    lines = Line.objects.bulk_create(
        [
            Line(
                partner_id=partner.pk,
                number=n.number,
                sub_account_id=pool.pk,
                daily_limit=partner.default_daily_limit,
                order_id=order.pk,
                activated_at=at,
            )
            for n in numbers
        ]
    )
    AssignmentPeriod.objects.bulk_create(
        [
            AssignmentPeriod(
                partner_id=partner.pk, line_id=line.pk, sub_account_id=pool.pk, start=at
            )
            for line in lines
        ]
    )
    InventoryNumber.objects.filter(pk__in=[n.pk for n in numbers]).update(
        status=InventoryStatus.ALLOCATED, partner_id=partner.pk, order_id=order.pk, allocated_at=at
    )
    SubAccount.objects.filter(pk=pool.pk).update(line_count=F("line_count") + len(lines))
    before = order.status
    order.fulfilled_count += len(lines)
    order.status = (
        LineOrderStatus.FULFILLED
        if order.fulfilled_count == order.quantity
        else LineOrderStatus.PARTIALLY_FULFILLED
    )
    order.save(update_fields=["fulfilled_count", "status", "updated_at"])
    audit_record_many(
        principal=principal,
        partner_id=partner.pk,
        action="line.activate",
        at=at,
        changes=(
            Change(
                "line",
                line.pk,
                {"number": line.number, "order_id": order.pk},
                sub_account_id=pool.pk,
                line_id=line.pk,
            )
            for line in lines
        ),
    )
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="line_order.fulfil",
        object_type="line_order",
        object_id=order.pk,
        at=at,
        data={
            "before": {"status": before, "fulfilled_count": order.fulfilled_count - len(lines)},
            "after": {"status": order.status, "fulfilled_count": order.fulfilled_count},
            "line_ids": [line.pk for line in lines],
        },
    )
    return len(lines)


@dataclass(slots=True)
class ImportReport:
    added: int = 0
    lines_delivered: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


MAX_IMPORT_ROWS = 200_000


@retry_on_lost_race
@transaction.atomic
def inventory_import(*, principal: Principal, csv_text: str) -> ImportReport:
    """Add numbers from CSV (column ``number``, optional ``area_code``) and fulfil orders.

    Good rows are added even when others are rejected; each rejected row is
    reported with its row number (the header is row 1) and the reason.
    """
    require(can_manage_inventory(principal), "Only provider staff import numbers.")
    reader = csv.DictReader(io.StringIO(csv_text))
    columns = [c.strip().lower() for c in (reader.fieldnames or [])]
    if "number" not in columns:
        raise Invalid("The CSV needs a header row with a 'number' column.", field="file")
    reader.fieldnames = columns
    report = ImportReport()
    seen: set[str] = set()
    good: list[tuple[int, str, str]] = []
    for row_no, row in enumerate(reader, start=2):
        if row_no > MAX_IMPORT_ROWS + 1:
            raise Invalid(f"At most {MAX_IMPORT_ROWS} rows per file.", field="file")
        raw = (row.get("number") or "").strip()
        try:
            number = normalize_e164(raw)
            area = _clean_area_code(row.get("area_code")) or area_code_of(number)
        except Invalid as exc:
            report.rejected.append({"row": row_no, "number": raw, "reason": str(exc.detail)})
            continue
        if number in seen:
            report.rejected.append(
                {"row": row_no, "number": raw, "reason": "Repeated earlier in the file."}
            )
            continue
        seen.add(number)
        good.append((row_no, number, area))
    numbers = [n for _, n, _ in good]
    in_stock: set[str] = set()
    active: set[str] = set()
    for chunk in chunks(numbers):  # type: ignore[arg-type]
        in_stock.update(
            InventoryNumber.objects.filter(
                status=InventoryStatus.IN_STOCK, number__in=chunk
            ).values_list("number", flat=True)
        )
        active.update(
            Line.objects.filter(status=LineStatus.ACTIVE, number__in=chunk).values_list(
                "number", flat=True
            )
        )
    at = clock.now()
    fresh: list[InventoryNumber] = []
    for row_no, number, area in good:
        if number in in_stock:
            report.rejected.append({"row": row_no, "number": number, "reason": "Already in stock."})
        elif number in active:
            report.rejected.append(
                {"row": row_no, "number": number, "reason": "Already an active line."}
            )
        else:
            fresh.append(InventoryNumber(number=number, area_code=area, imported_at=at))
    InventoryNumber.objects.bulk_create(fresh, batch_size=2000)
    report.added = len(fresh)
    audit_record(
        principal=principal,
        partner_id=None,
        action="inventory.import",
        object_type="inventory",
        object_id="import",
        at=at,
        data={"added": report.added, "rejected": len(report.rejected)},
    )
    report.lines_delivered = line_orders_fulfil(principal=principal)
    return report
