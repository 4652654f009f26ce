"""Property test: any sequence of moves, assigns, disconnects and locks keeps the invariants.

A small model predicts which operations succeed; the services must agree with it,
and after every step line counts, open periods and period tiling must hold, and the
audit log must hold exactly one event per line changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.audit.models import AuditEvent
from portal.core.errors import Conflict
from portal.lines import services
from portal.partners.models import SubAccount
from tests.factories import (
    SYSTEM,
    assert_line_invariants,
    force_state,
    make_lines,
    make_partner,
    make_sub_account,
)

LINES = 4
POOL, MERGED = 0, 4  # sub-account slots: 0 Available, 1-3 standard, 4 merged
SLOTS = 5

operation = st.tuples(
    st.sampled_from(["move", "move", "move", "assign", "assign", "bulk", "bulk", "lock", "cut"]),
    st.integers(0, LINES - 1),
    st.integers(0, SLOTS - 1),
    st.lists(st.integers(0, LINES - 1), min_size=1, max_size=LINES),
)


@dataclass
class Model:
    """Where each line is (slot, or None once disconnected) and which slots are locked."""

    where: list[int | None] = field(default_factory=lambda: [POOL] * LINES)
    locked: set[int] = field(default_factory=set)

    def can_hold(self, slot: int) -> bool:
        return slot != MERGED and slot not in self.locked

    def move(self, lines: list[int], target: int) -> int | None:
        """Lines moved, or None when the service must refuse (409)."""
        if any(self.where[i] is None for i in lines):
            return None
        to_move = [i for i in lines if self.where[i] != target]
        if not to_move:
            return 0
        if not self.can_hold(target) or any(self.where[i] in self.locked for i in to_move):
            return None
        for i in to_move:
            self.where[i] = target
        return len(to_move)

    def assign(self, line: int, target: int) -> bool:
        source = self.where[line]
        if source != POOL or target == POOL or not self.can_hold(target):
            return False
        if source in self.locked:
            return False
        self.where[line] = target
        return True

    def disconnect(self, line: int) -> bool:
        source = self.where[line]
        if source is None or source in self.locked:
            return False
        self.where[line] = None
        return True


def perform(kind: str, line_id: int, target_id: int, bulk_ids: list[int]):
    if kind == "move":
        return services.line_move(principal=SYSTEM, line_id=line_id, sub_account_id=target_id)
    if kind == "bulk":
        return services.line_move_bulk(
            principal=SYSTEM, line_ids=bulk_ids, sub_account_id=target_id
        )
    if kind == "assign":
        return services.line_assign(
            principal=SYSTEM, line_id=line_id, sub_account_id=target_id, label="Desk"
        )
    return services.line_disconnect(principal=SYSTEM, line_id=line_id)


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(operation, max_size=20))
def test_random_operations_keep_the_invariants(steps):
    partner = make_partner()
    slots: list[SubAccount] = [SubAccount.objects.get(partner=partner, kind="available")]
    slots += [make_sub_account(partner, f"Slot {i}") for i in range(1, 4)]
    slots.append(force_state(make_sub_account(partner, "Merged"), status="merged"))
    lines = make_lines(partner, LINES)
    model = Model()
    changed = 0

    for kind, line, slot, bulk in steps:
        line_id, target_id = lines[line].pk, slots[slot].pk
        if kind == "lock":
            slot = 1 + slot % 3  # only standard sub-accounts are ever locked
            model.locked ^= {slot}
            force_state(slots[slot], lock_reason="pending request" if slot in model.locked else "")
            continue
        if kind == "move":
            moved = model.move([line], slot)
            expected = moved or None  # a single move onto its own sub-account is a conflict
        elif kind == "bulk":
            expected = model.move(sorted(set(bulk)), slot)
        elif kind == "assign":
            expected = 1 if model.assign(line, slot) else None
        else:
            expected = 1 if model.disconnect(line) else None
        bulk_ids = [lines[i].pk for i in bulk]

        if expected is None:
            with pytest.raises(Conflict):
                perform(kind, line_id, target_id, bulk_ids)
        else:
            result = perform(kind, line_id, target_id, bulk_ids)
            if kind == "bulk":
                assert result.moved == expected
            changed += expected

        for i, ln in enumerate(lines):
            ln.refresh_from_db()
            want = model.where[i]
            assert ln.sub_account_id == (None if want is None else slots[want].pk)
        assert_line_invariants([partner.pk])

    events = AuditEvent.objects.filter(
        partner=partner, action__in=["line.move", "line.assign", "line.disconnect"]
    ).count()
    assert events == changed
