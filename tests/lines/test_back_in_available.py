"""domain §2: a line back in Available drops its former client's label, user name, user email
and notes, its daily limit returns to the partner's default, and the audit event of the
change keeps what it had — for a single move, a bulk move and a deletion's disposition."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.audit.models import AuditEvent
from portal.core.principal import Principal
from portal.lines.models import Line, LineLimitChange
from portal.lines.services import line_assign, line_move, line_move_bulk, line_update
from portal.partners.models import SubAccount
from portal.partners.selectors import available_pool
from portal.workflows.services import deletions
from tests.factories import (
    SYSTEM,
    assert_line_invariants,
    make_lines,
    make_sub_account,
    make_tenant,
    make_user,
)

pytestmark = pytest.mark.django_db

DETAILS = {
    "label": "Front desk",
    "user_name": "Ann Client",
    "user_email": "ann@client.example",
    "daily_limit": 80,
}
CLEARED = {"label": "", "user_name": "", "user_email": "", "notes": "", "daily_limit": 50}


@pytest.fixture
def world():
    tenant = make_tenant("Recycling Partner", default_daily_limit=50)
    client_a = make_sub_account(tenant.partner, "Client A – Sales")
    client_b = make_sub_account(tenant.partner, "Client B – Support")
    lines = make_lines(tenant.partner, 3)
    for line in lines[:2]:
        line_assign(principal=SYSTEM, line_id=line.pk, sub_account_id=client_a.pk, **DETAILS)
        line_update(principal=SYSTEM, line_id=line.pk, notes="Call after 5pm")
    # The third goes to A bare: nothing to drop but its place.
    line_move(principal=SYSTEM, line_id=lines[2].pk, sub_account_id=client_a.pk)
    return {
        "tenant": tenant,
        "a": client_a,
        "b": client_b,
        "pool": available_pool(tenant.partner.pk),
        "lines": lines,
    }


def details_of(line: Line) -> dict[str, object]:
    return dict(
        Line.objects.filter(pk=line.pk).values(*CLEARED).get(),
    )


def last_move_of(line: Line) -> AuditEvent:
    return AuditEvent.objects.filter(line_id=line.pk, action="line.move").latest("pk")


HAD = {**DETAILS, "notes": "Call after 5pm"}


def test_a_single_move_back_to_available_drops_the_details_and_the_audit_keeps_them(world):
    line = world["lines"][0]
    moved = line_move(
        principal=SYSTEM,
        line_id=line.pk,
        sub_account_id=world["pool"].pk,
        from_sub_account_id=world["a"].pk,
    )
    assert moved.sub_account_id == world["pool"].pk
    assert details_of(line) == CLEARED
    event = last_move_of(line)
    assert event.data["before"] == {"sub_account_id": world["a"].pk, **HAD}
    assert event.data["after"] == {"sub_account_id": world["pool"].pk, **CLEARED}
    assert AuditEvent.objects.filter(line_id=line.pk, action="line.move").count() == 1
    # The limit's history records the reset (analytics judges days by it).
    change = LineLimitChange.objects.filter(line=line).latest("pk")
    assert (change.old_limit, change.new_limit) == (80, 50)
    assert_line_invariants([world["tenant"].partner.pk])


def test_a_move_between_clients_keeps_the_details(world):
    line = world["lines"][0]
    line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=world["b"].pk)
    assert details_of(line) == HAD
    assert last_move_of(line).data["before"] == {"sub_account_id": world["a"].pk}


def test_a_bulk_move_back_to_available_drops_every_lines_details(world):
    lines = world["lines"]
    result = line_move_bulk(
        principal=SYSTEM,
        line_ids=[line.pk for line in lines],
        sub_account_id=world["pool"].pk,
        seen_in={line.pk: world["a"].pk for line in lines},
    )
    assert result.moved == 3
    assert [details_of(line) for line in lines] == [CLEARED] * 3
    assert SubAccount.objects.get(pk=world["pool"].pk).line_count == 3
    # One event per line; each keeps what that line had, and only what changed.
    for line in lines[:2]:
        event = last_move_of(line)
        assert event.data["before"] == {"sub_account_id": world["a"].pk, **HAD}
        assert event.data["after"] == {"sub_account_id": world["pool"].pk, **CLEARED}
    bare = last_move_of(lines[2])
    assert bare.data["before"] == {"sub_account_id": world["a"].pk}
    assert bare.data["after"] == {"sub_account_id": world["pool"].pk}
    assert_line_invariants([world["tenant"].partner.pk])


def test_a_deletion_disposing_of_its_lines_into_available_drops_their_details(world):
    requester = Principal.for_user(
        make_user(world["tenant"].partner, "dora@recycling.example", "manager")
    )
    request = deletions.deletion_request_create(
        principal=requester,
        sub_account_id=world["a"].pk,
        line_disposition="move",
        move_to_id=world["pool"].pk,
    )
    deletions.deletion_request_approve(principal=Principal.system("staff"), request_id=request.pk)
    lines = world["lines"]
    assert [details_of(line) for line in lines] == [CLEARED] * 3
    event = last_move_of(lines[0])
    assert event.data["deletion_request_id"] == request.pk
    assert event.data["before"] == {"sub_account_id": world["a"].pk, **HAD}
    assert event.data["after"] == {"sub_account_id": world["pool"].pk, **CLEARED}
    assert SubAccount.objects.get(pk=world["pool"].pk).line_count == 3
    assert_line_invariants([world["tenant"].partner.pk])


def test_a_deletion_moving_its_lines_to_another_client_keeps_their_details(world):
    requester = Principal.for_user(
        make_user(world["tenant"].partner, "dora@recycling.example", "manager")
    )
    request = deletions.deletion_request_create(
        principal=requester,
        sub_account_id=world["a"].pk,
        line_disposition="move",
        move_to_id=world["b"].pk,
    )
    deletions.deletion_request_approve(principal=Principal.system("staff"), request_id=request.pk)
    assert details_of(world["lines"][0]) == HAD


def test_the_audit_log_page_shows_what_the_line_dropped(world):
    line = world["lines"][0]
    line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=world["pool"].pk)
    admin = make_user(world["tenant"].partner, "ada@recycling.example", "admin")
    client = Client()
    client.force_login(admin)
    page = client.get("/audit/", {"line": line.pk}).content.decode()
    assert "back in Available it dropped its label “Front desk”" in page
    assert "user email “ann@client.example”" in page
    assert "daily limit 80 → 50" in page
