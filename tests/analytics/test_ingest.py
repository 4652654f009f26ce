"""POST /message-events: validation per event, duplicates, attribution, conversations, rollups."""

from __future__ import annotations

import datetime as dt

import pytest

from portal.analytics import ingestion
from portal.analytics.ingestion import MAX_BATCH
from portal.analytics.models import Conversation, DailyLineRollup, MessageEvent
from portal.analytics.parsing import contact_hash
from portal.audit.models import AuditEvent
from portal.core import clock
from portal.lines.services import line_disconnect, line_order_create
from portal.partners.models import SubAccount
from tests.analytics.support import (
    T0,
    assign_at,
    conversations,
    event,
    ingest,
    lines_at,
    move_at,
    rollup,
    rollups,
    utc,
)
from tests.conftest import Api
from tests.factories import (
    SYSTEM,
    fresh_numbers,
    import_numbers,
    make_sub_account,
    make_tenant,
)

PATH = "/message-events"


@pytest.fixture
def platform(staff_key) -> Api:
    return Api(staff_key)


@pytest.fixture
def line(tenant):
    return lines_at(tenant.partner, 1)[0]


def pool_of(partner) -> SubAccount:
    return SubAccount.objects.get(partner=partner, kind="available")


# --- Who may post -------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "manager", "billing", "viewer"])
def test_partner_keys_may_not_post_events(tenant, line, role):
    body = {"events": [event("e1", line, "outbound", "+14155550199", utc("2025-03-02 09:00"))]}
    response = Api(tenant.keys[role]).post(PATH, body)
    assert response.status_code == 403
    assert "staff key" in response.json()["detail"]
    assert not MessageEvent.objects.exists()


def test_the_platform_posts_for_every_partner(platform, tenant, line):
    other = make_tenant("Other Partner")
    other_line = lines_at(other.partner, 1)[0]
    body = {
        "events": [
            event("e1", line, "outbound", "+14155550199", utc("2025-03-02 09:00")),
            event("e2", other_line, "outbound", "+14155550199", utc("2025-03-02 09:00")),
        ]
    }
    assert platform.ok_post(PATH, body) == {"accepted": 2, "duplicates": 0, "rejected": []}
    stored = dict(MessageEvent.objects.values_list("event_id", "partner_id"))
    assert stored == {"e1": tenant.partner.pk, "e2": other.partner.pk}


def test_staff_acting_for_a_partner_posts_only_for_that_partner(platform, tenant, line):
    other = make_tenant("Other Partner")
    body = {"events": [event("e1", line, "outbound", "+14155550199", utc("2025-03-02 09:00"))]}
    result = platform.ok_post(f"{PATH}?partner={other.partner.slug}", body)
    assert result["accepted"] == 0
    assert result["rejected"] == [
        {"index": 0, "detail": f"line {line.number} is not a known line."}
    ]


def test_ingestion_is_logged_not_audited(platform, line, caplog):
    before = AuditEvent.objects.count()
    body = {"events": [event("e1", line, "outbound", "+14155550199", utc("2025-03-02 09:00"))]}
    with caplog.at_level("INFO", logger="portal.analytics"):
        platform.ok_post(PATH, body)
    assert AuditEvent.objects.count() == before
    assert "1 accepted, 0 duplicates, 0 rejected" in caplog.text


# --- Validation, event by event ----------------------------------------------------------


def test_bad_events_are_rejected_by_index_and_the_rest_stored(platform, tenant, line):
    good = event("ok-1", line, "outbound", "+14155550199", "2025-03-02T09:00:00Z")
    unknown = fresh_numbers(1)[0]
    events = [
        good,  # 0
        {**good, "id": "bad-1", "line": "+1 415"},  # 1 bad E.164
        {**good, "id": "bad-2", "line": unknown},  # 2 not a line
        {**good, "id": "bad-3", "direction": "sideways"},  # 3
        {**good, "id": "bad-4", "occurred_at": "2025-03-02T09:00:00"},  # 4 naive
        {k: v for k, v in good.items() if k != "occurred_at"} | {"id": "bad-5"},  # 5 missing
        {"id": "bad-6"},  # 6 missing most fields
        ["not", "an", "object"],  # 7
        "a string",  # 8
        None,  # 9
        {**good, "id": "bad-10", "occurred_at": "yesterday"},  # 10
        {**good, "id": "bad-11", "occurred_at": "2025-02-01T09:00:00Z"},  # 11 before activation
        {**good, "id": "bad-12", "occurred_at": "2999-01-01T00:00:00Z"},  # 12 future
        {**good, "id": {"nested": 1}},  # 13
        {**good, "id": "bad-14", "contact": 14155550199},  # 14
        {**good, "id": "bad-15", "line": 14155550100},  # 15
        {**good, "id": "ok-2", "direction": "inbound", "extra": "ignored"},  # 16
    ]
    result = platform.ok_post(PATH, {"events": events})
    assert result["accepted"] == 2
    assert result["duplicates"] == 0
    details = {r["index"]: r["detail"] for r in result["rejected"]}
    assert sorted(details) == list(range(1, 16))
    assert "E.164" in details[1] or "not a" in details[1]
    assert details[2] == f"line {unknown} is not a known line."
    assert "direction" in details[3]
    assert "timezone" in details[4]
    assert details[5] == "Missing field(s): occurred_at."
    assert details[6] == "Missing field(s): line, direction, contact, occurred_at."
    assert details[7] == details[8] == details[9] == "Each event must be a JSON object."
    assert "ISO 8601" in details[10]
    assert details[11] == f"line {line.number} was not active at 2025-02-01T09:00:00+00:00."
    assert details[12] == "occurred_at is in the future."
    assert "id must be" in details[13]
    assert "contact" in details[14]
    assert "line" in details[15]
    assert set(MessageEvent.objects.values_list("event_id", flat=True)) == {"ok-1", "ok-2"}


@pytest.mark.parametrize(
    "body",
    [{}, {"events": "nope"}, {"events": None}, {"events": [], "extra": 1}, []],
    ids=["no events", "not a list", "null", "unknown field", "not an object"],
)
def test_a_malformed_body_is_422(platform, body):
    response = platform.post(PATH, body)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_a_batch_over_the_limit_is_refused_whole(platform, line):
    good = event("e", line, "outbound", "+14155550199", "2025-03-02T09:00:00Z")
    events = [{**good, "id": f"e{i}"} for i in range(MAX_BATCH + 1)]
    response = platform.post(PATH, {"events": events})
    assert response.status_code == 422
    assert "at most 10,000 events" in response.json()["detail"]
    assert not MessageEvent.objects.exists()


def test_a_full_batch_is_accepted(platform, line):
    start = utc("2025-03-02 00:00")
    events = [
        event(
            f"e{i}", line, "outbound", f"+1415555{i % 10000:04d}", start + dt.timedelta(seconds=i)
        )
        for i in range(MAX_BATCH)
    ]
    result = platform.ok_post(PATH, {"events": events})
    assert result == {"accepted": MAX_BATCH, "duplicates": 0, "rejected": []}
    assert Conversation.objects.count() == MAX_BATCH
    assert DailyLineRollup.objects.get().new_conversations == MAX_BATCH


def test_contacts_are_stored_only_as_a_keyed_hash(platform, line):
    body = {"events": [event("e1", line, "outbound", "+1 (415) 555-0199", "2025-03-02T09:00Z")]}
    platform.ok_post(PATH, body)
    stored = MessageEvent.objects.get()
    assert stored.contact_hash == contact_hash("+14155550199")
    assert len(stored.contact_hash) == 64
    assert "4155550199" not in stored.contact_hash
    assert Conversation.objects.get().contact_hash == stored.contact_hash


def test_offsets_are_read_and_stored_in_utc(platform, line):
    body = {"events": [event("e1", line, "outbound", "+14155550199", "2025-03-02T04:00:00-05:00")]}
    platform.ok_post(PATH, body)
    assert MessageEvent.objects.get().occurred_at == utc("2025-03-02 09:00")


# --- Duplicates -------------------------------------------------------------------------


def test_repeated_ids_are_counted_and_ignored(platform, tenant, line):
    first = event("e1", line, "outbound", "+14155550199", "2025-03-02T09:00:00Z")
    second = event("e2", line, "inbound", "+14155550199", "2025-03-02T10:00:00Z")
    assert platform.ok_post(PATH, {"events": [first, first, second]}) == {
        "accepted": 2,
        "duplicates": 1,
        "rejected": [],
    }
    before = rollups(tenant.partner)
    assert platform.ok_post(PATH, {"events": [second, first]}) == {
        "accepted": 0,
        "duplicates": 2,
        "rejected": [],
    }
    assert MessageEvent.objects.count() == 2
    assert rollups(tenant.partner) == before
    # A redelivery that differs from the first is still the same event: ignored.
    changed = {**first, "direction": "inbound"}
    assert platform.ok_post(PATH, {"events": [changed]})["duplicates"] == 1
    assert rollups(tenant.partner) == before


def test_a_clash_stores_the_free_ids_and_says_which(tenant, line):
    """An id stored before, or sent for two lines at once: the rows go again as a
    conflict-checking insert that reports exactly what went in."""
    ingest(event("s1", line, "outbound", "+14155550199", "2025-03-02T09:00:00Z"))
    stored = MessageEvent.objects.get(event_id="s1")
    now = clock.now()

    def row(event_id: str) -> ingestion._Stored:
        return ingestion._Stored(
            tenant.partner.pk,
            event_id,
            line.pk,
            stored.sub_account_id,
            "outbound",
            stored.contact_hash,
            stored.occurred_at,
            stored.local_day,
            now,
        )

    assert ingestion._insert_new_events([row("s1"), row("s2"), row("s3")]) == {
        (tenant.partner.pk, "s2"),
        (tenant.partner.pk, "s3"),
    }
    # A stored id and two rows with one id: the COPY clashes on PostgreSQL and is undone
    # (with what was derived meanwhile), and one s4 is stored. What is derived is derived
    # from the rows inserted.
    inserted, derived = ingestion._store_events(
        [row("s4"), row("s4"), row("s1")], lambda rows: [r.event_id for r in rows]
    )
    assert [r.event_id for r in inserted] == ["s4", "s4"]
    assert derived == ["s4", "s4"]
    assert sorted(MessageEvent.objects.values_list("event_id", flat=True)) == [
        "s1",
        "s2",
        "s3",
        "s4",
    ]


# --- Conversations and rollups -----------------------------------------------------------


def test_the_30_day_edge(tenant, line):
    pool = pool_of(tenant.partner)
    start = utc("2025-03-02 09:00")
    ingest(
        event("a1", line, "outbound", "+14155550101", start),
        event("a2", line, "outbound", "+14155550101", start + dt.timedelta(days=30, seconds=-1)),
        event("b1", line, "outbound", "+14155550102", start),
        event("b2", line, "outbound", "+14155550102", start + dt.timedelta(days=30)),
    )
    assert rollup(tenant.partner, line, pool, "2025-03-02")["new_conversations"] == 2
    # a2 (08:59:59) continues a1's conversation; b2 (09:00:00) starts a new one.
    assert rollup(tenant.partner, line, pool, "2025-04-01") == {
        "messages_sent": 2,
        "messages_received": 0,
        "new_conversations": 1,
        "responded_conversations": 0,
        "inbound_conversations": 0,
    }
    started = [c[3] for c in conversations(tenant.partner)]
    assert sorted(started) == [start, start, start + dt.timedelta(days=30)]


def test_a_reply_after_the_first_outbound_responds(tenant, line):
    pool = pool_of(tenant.partner)
    ingest(
        event("o1", line, "outbound", "+14155550101", utc("2025-03-02 09:00")),
        event("i1", line, "inbound", "+14155550101", utc("2025-03-03 18:00")),
    )
    assert rollup(tenant.partner, line, pool, "2025-03-02") == {
        "messages_sent": 1,
        "messages_received": 0,
        "new_conversations": 1,
        "responded_conversations": 1,
        "inbound_conversations": 0,
    }
    # The reply counts on the day the conversation started, not the day it came.
    assert rollup(tenant.partner, line, pool, "2025-03-03")["responded_conversations"] == 0


def test_a_message_before_the_first_outbound_makes_an_inbound_conversation(tenant, line):
    pool = pool_of(tenant.partner)
    ingest(
        event("i1", line, "inbound", "+14155550101", utc("2025-03-02 08:00")),
        event("o1", line, "outbound", "+14155550101", utc("2025-03-02 09:00")),
        event("i2", line, "inbound", "+14155550101", utc("2025-03-02 10:00")),
    )
    assert rollup(tenant.partner, line, pool, "2025-03-02") == {
        "messages_sent": 1,
        "messages_received": 2,
        "new_conversations": 0,
        "responded_conversations": 0,
        "inbound_conversations": 1,
    }


def test_a_late_inbound_message_turns_a_new_conversation_into_an_inbound_one(tenant, line):
    pool = pool_of(tenant.partner)
    ingest(event("o1", line, "outbound", "+14155550101", utc("2025-03-03 09:00")))
    assert rollup(tenant.partner, line, pool, "2025-03-03")["new_conversations"] == 1
    ingest(event("i0", line, "inbound", "+14155550101", utc("2025-03-02 23:00")))
    assert rollup(tenant.partner, line, pool, "2025-03-03") == {
        "messages_sent": 1,
        "messages_received": 0,
        "new_conversations": 0,
        "responded_conversations": 0,
        "inbound_conversations": 0,
    }
    assert rollup(tenant.partner, line, pool, "2025-03-02")["inbound_conversations"] == 1
    assert Conversation.objects.count() == 1


def test_a_late_message_can_join_two_conversations_into_one(tenant, line):
    pool = pool_of(tenant.partner)
    ingest(
        event("o1", line, "outbound", "+14155550101", utc("2025-03-02 09:00")),
        event("o2", line, "outbound", "+14155550101", utc("2025-04-20 09:00")),
    )
    assert Conversation.objects.count() == 2
    ingest(event("i1", line, "inbound", "+14155550101", utc("2025-03-25 09:00")))
    assert Conversation.objects.count() == 1
    assert rollup(tenant.partner, line, pool, "2025-03-02")["responded_conversations"] == 1
    assert rollup(tenant.partner, line, pool, "2025-04-20")["new_conversations"] == 0


def test_a_reply_after_a_quiet_month_answers_the_outreach_and_opens_an_inbound_one(tenant, line):
    pool = pool_of(tenant.partner)
    ingest(event("o1", line, "outbound", "+14155550101", utc("2025-03-02 09:00")))
    ingest(event("i1", line, "inbound", "+14155550101", utc("2025-04-15 09:00")))
    # domain §4: the window for an answer closes at the pair's next *new* conversation.
    assert rollup(tenant.partner, line, pool, "2025-03-02")["responded_conversations"] == 1
    assert rollup(tenant.partner, line, pool, "2025-04-15")["inbound_conversations"] == 1


def test_a_line_assigned_the_instant_it_arrived_belongs_to_its_sub_account(tenant):
    line = lines_at(tenant.partner, 1, utc("2025-03-01 00:00"))[0]
    alpha = make_sub_account(tenant.partner, "Alpha – Sales")
    assign_at(line, alpha, utc("2025-03-01 00:00"))
    result = ingest(event("o1", line, "outbound", "+14155550101", utc("2025-03-01 00:00")))
    assert result.accepted == 1
    assert MessageEvent.objects.get().sub_account_id == alpha.pk


def test_a_line_moved_mid_day_splits_its_day_between_the_holders(tenant, line):
    partner = tenant.partner
    alpha = make_sub_account(partner, "Alpha – Sales")
    beta = make_sub_account(partner, "Beta – Support")
    assign_at(line, alpha, utc("2025-03-01 12:00"))
    move_at(line, beta, utc("2025-03-02 12:00"))
    ingest(
        event("o1", line, "outbound", "+14155550101", utc("2025-03-02 11:59:59")),
        event("o2", line, "outbound", "+14155550102", utc("2025-03-02 12:00")),
        event("i1", line, "inbound", "+14155550101", utc("2025-03-02 13:00")),
    )
    held = dict(MessageEvent.objects.values_list("event_id", "sub_account_id"))
    assert held == {"o1": alpha.pk, "o2": beta.pk, "i1": beta.pk}
    # The conversation started with Alpha; the reply after the move still answers it.
    assert rollup(partner, line, alpha, "2025-03-02") == {
        "messages_sent": 1,
        "messages_received": 0,
        "new_conversations": 1,
        "responded_conversations": 1,
        "inbound_conversations": 0,
    }
    assert rollup(partner, line, beta, "2025-03-02") == {
        "messages_sent": 1,
        "messages_received": 1,
        "new_conversations": 1,
        "responded_conversations": 0,
        "inbound_conversations": 0,
    }


def test_a_disconnected_line_takes_events_from_its_active_life_only(platform, tenant, line):
    with clock.frozen_at(utc("2025-03-05 12:00")):
        line_disconnect(principal=SYSTEM, line_id=line.pk)
    body = {
        "events": [
            event("o1", line, "outbound", "+14155550101", utc("2025-03-05 11:59")),
            event("o2", line, "outbound", "+14155550101", utc("2025-03-05 12:00")),
        ]
    }
    result = platform.ok_post(PATH, body)
    assert result["accepted"] == 1
    assert result["rejected"][0]["index"] == 1
    assert "was not active" in result["rejected"][0]["detail"]


def test_a_reissued_number_attributes_events_to_the_line_of_the_time(tenant):
    partner = tenant.partner
    first = lines_at(partner, 1)[0]
    with clock.frozen_at(utc("2025-03-05 12:00")):
        line_disconnect(principal=SYSTEM, line_id=first.pk)
    other = make_tenant("Next Owner")
    import_numbers(first.number)
    with clock.frozen_at(utc("2025-03-10 00:00")):
        line_order_create(principal=SYSTEM.acting_for(other.partner.pk), quantity=1)
    ingest(
        event("old", first.number, "outbound", "+14155550101", utc("2025-03-04 09:00")),
        event("new", first.number, "outbound", "+14155550101", utc("2025-03-11 09:00")),
    )
    owners = dict(MessageEvent.objects.values_list("event_id", "partner_id"))
    assert owners == {"old": partner.pk, "new": other.partner.pk}
    assert Conversation.objects.filter(partner=partner).count() == 1
    assert Conversation.objects.filter(partner=other.partner).count() == 1


def test_days_are_the_partners_local_days(db):
    tenant = make_tenant("New York Partner", timezone="America/New_York")
    line = lines_at(tenant.partner, 1, utc("2025-01-01 00:00"))[0]
    pool = pool_of(tenant.partner)
    # 05:00 UTC is midnight in New York in January (UTC-5).
    ingest(
        event("late", line, "outbound", "+14155550101", utc("2025-01-11 04:59:59")),
        event("early", line, "outbound", "+14155550102", utc("2025-01-11 05:00:00")),
    )
    assert rollup(tenant.partner, line, pool, "2025-01-10")["new_conversations"] == 1
    assert rollup(tenant.partner, line, pool, "2025-01-11")["new_conversations"] == 1
    days = dict(MessageEvent.objects.values_list("event_id", "local_day"))
    assert days == {"late": dt.date(2025, 1, 10), "early": dt.date(2025, 1, 11)}


def test_rollups_and_conversations_equal_a_fresh_recount(tenant):
    """Many small batches leave exactly what one batch of everything leaves."""
    partner = tenant.partner
    line_a, line_b = lines_at(partner, 2)
    events = []
    for i in range(40):
        line = line_a if i % 3 else line_b
        contact = f"+1415555{(i % 4):04d}"
        direction = "inbound" if i % 5 == 0 else "outbound"
        events.append(event(f"e{i}", line, direction, contact, T0 + dt.timedelta(days=i * 1.7)))
    for i in range(0, 40, 7):
        ingest(*events[i : i + 7][::-1])
    piecewise = (rollups(partner), conversations(partner))
    Conversation.objects.all().delete()
    DailyLineRollup.objects.all().delete()
    MessageEvent.objects.all().delete()
    ingest(*events)
    assert (rollups(partner), conversations(partner)) == piecewise
    assert Conversation.objects.exclude(sub_account=pool_of(partner)).count() == 0
