"""Audit events in words (issue 18 point 9): every action code any service records has
words, the filter offers every one, and details read as sentences without codes,
Python lists or ISO stamps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from portal.audit.describe import ACTION_WORDS, actor_words, as_list, describe_events
from portal.audit.forms import AuditFilterForm
from portal.audit.models import AuditEvent
from portal.billing.terms import credit_grant
from portal.core.principal import Principal
from portal.workflows.services import merges
from portal.workflows.tasks import process_merge_request
from tests.browser.conftest import PASSWORD
from tests.factories import SYSTEM, make_partner, make_sub_account, make_user
from tests.workflows.support import fill

SRC = Path(__file__).resolve().parents[2] / "src" / "portal"
LITERAL = re.compile(r'action="([a-z_]+\.[a-z_]+)"')
FORMATTED = re.compile(r'action=f"([^"]+)"')
# The f-string codes the services build, and what they expand to.
EXPANSIONS = {
    "{request.kind}_request.{verb}": [
        f"{kind}_request.{verb}" for kind in ("merge", "deletion") for verb in ("reject", "cancel")
    ],
}


def emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        codes.update(LITERAL.findall(text))
        for pattern in FORMATTED.findall(text):
            assert pattern in EXPANSIONS, f"{path}: give words to every code of {pattern!r}"
            codes.update(EXPANSIONS[pattern])
    return codes


def test_every_recorded_action_has_words():
    codes = emitted_codes()
    assert {"merge_request.create", "credit.grant", "line.merge"} <= codes
    missing = sorted(codes - ACTION_WORDS.keys())
    assert missing == [], f"actions without words in audit.describe.ACTION_WORDS: {missing}"


def test_the_filter_offers_every_action_in_words():
    offered = dict(AuditFilterForm().fields["action"].choices)
    assert set(ACTION_WORDS) <= set(offered)
    assert offered["merge_request.create"] == "Merge requested"
    assert offered["credit.grant"] == "Credit granted"


def test_actors_in_words():
    assert actor_words("task:merge") == "the merge worker"
    assert actor_words("job:retention-purge") == "the retention purge job"
    assert actor_words("key:ab12cd (CRM sync)", "api_key") == "API key “CRM sync”"
    assert actor_words("cli:runbilling") == "the “portal runbilling” command"
    assert actor_words("ann@example.com", "user") == "ann@example.com"
    assert as_list(["A", "B", "C"]) == "A, B and C"


@pytest.mark.django_db
def test_a_merge_and_a_credit_read_as_sentences(settings):
    partner = make_partner("Worded Resellers", timezone="America/New_York")
    admin = make_user(partner, "admin@worded.example", "admin", password=PASSWORD)
    first = make_sub_account(partner, "Client W – East")
    second = make_sub_account(partner, "Client W – West")
    target = make_sub_account(partner, "Client W – All")
    fill(first, 2)
    requester = Principal.for_user(admin)
    merge = merges.merge_request_create(
        principal=requester, source_ids=[first.pk, second.pk], target_id=target.pk
    )
    merges.merge_request_approve(principal=SYSTEM, request_id=merge.pk)
    process_merge_request.call(merge.pk)
    credit_grant(
        principal=SYSTEM.acting_for(partner.pk),
        sub_account_id=target.pk,
        amount="12345.5",
        reason="Goodwill",
    )

    with timezone.override("America/New_York"):
        events = describe_events(requester, AuditEvent.objects.filter(partner=partner))
    by_action = {e.action: e for e in events}
    created = by_action["merge_request.create"]
    assert created.action_label == "Merge requested"
    assert created.summary == "Client W – East and Client W – West into Client W – All."
    complete = by_action["merge_request.complete"]
    assert complete.actor_words == "the merge worker"
    assert complete.summary.startswith("Client W – East and Client W – West merged into")
    assert "2 lines moved" in complete.summary
    moved = by_action["line.merge"]
    assert "from Client W – East to Client W – All by merge request" in moved.summary
    assert by_action["sub_account.create"].summary.startswith("Name “Client W – ")
    credit = by_action["credit.grant"]
    assert credit.summary == "12,345.50 USD credit for Client W – All. Reason: “Goodwill”."
    for event in events:
        text = f"{event.action_label} {event.actor_words} {event.summary}"
        assert "['" not in text and "task:" not in text and "_request." not in text, text
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", text), text


@pytest.mark.django_db
def test_pages_show_words(settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    partner = make_partner("Paged Resellers")
    make_user(partner, "admin@paged.example", "admin", password=PASSWORD)
    source = make_sub_account(partner, "Client P – Old")
    target = make_sub_account(partner, "Client P – New")
    merge = merges.merge_request_create(
        principal=SYSTEM.acting_for(partner.pk), source_ids=[source.pk], target_id=target.pk
    )
    merges.merge_request_reject(principal=SYSTEM, request_id=merge.pk, reason="Not now")
    client = Client()
    assert client.login(email="admin@paged.example", password=PASSWORD)
    log = client.get("/audit/").content.decode()
    assert "Merge requested" in log and "Merge rejected" in log
    assert "merge_request.create" not in log.split("<select", 1)[0]
    assert '<option value="merge_request.create">Merge requested</option>' in log
    history = client.get(f"/requests/merge/{merge.pk}/").content.decode()
    assert "Merge requested by" in history
    assert "Merge rejected by" in history and "Reason: “Not now”." in history
    assert "reject by" not in history
