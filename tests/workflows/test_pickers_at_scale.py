"""Merge and deletion pages for a partner with more sub-accounts than a select holds
(issue 18 point 13): the target, other sources and the lines' destination are typed with
suggestions and resolved by name within the partner, so the 1,200th sub-account
alphabetically can be chosen like the first."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from portal.partners.models import SubAccount
from portal.workflows.forms import MAX_CHOICES
from portal.workflows.models import DeletionRequest, MergeRequest
from tests.browser.conftest import PASSWORD
from tests.factories import make_partner, make_sub_account, make_user
from tests.workflows.support import fill

pytestmark = pytest.mark.django_db

MANY = 1200


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def crowd(partner, count: int = MANY) -> None:
    """``count`` empty sub-accounts named "Bulk 0000" … in name order."""
    SubAccount.objects.bulk_create(
        SubAccount(partner=partner, name=f"Bulk {i:04d}") for i in range(count)
    )


@pytest.fixture
def world():
    partner = make_partner("Crowded Resellers")
    crowd(partner)
    source = make_sub_account(partner, "Aardvark Source")
    fill(source, 2)
    # Last alphabetically: far beyond the first 1,000 (and any select's limit).
    last = make_sub_account(partner, "Zulu Target")
    make_user(partner, "admin@crowded.example", "admin", password=PASSWORD)
    client = Client()
    assert client.login(email="admin@crowded.example", password=PASSWORD)
    return partner, source, last, client


def test_more_than_a_select_holds():
    assert MANY > 1000 > MAX_CHOICES


def test_merge_page_asks_for_a_name_with_suggestions(world):
    _partner, source, _last, client = world
    page = client.get(f"/sub-accounts/{source.pk}/request-merge/")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<select name="target_id"' not in html
    assert 'list="target-options"' in html
    assert "Zulu Target" not in html  # nothing listed up front

    suggestions = client.get(
        "/requests/sub-account-options/",
        {"for": "merge", "list": "target-options", "target_id": "zul"},
    )
    assert '<datalist id="target-options">' in suggestions.content.decode()
    assert 'value="Zulu Target"' in suggestions.content.decode()


def test_merge_into_the_last_sub_account_by_name(world):
    _partner, source, last, client = world
    preview = client.post(
        f"/sub-accounts/{source.pk}/request-merge/",
        {"target_id": "zulu target", "preview": "1"},
    )
    assert preview.status_code == 200, preview.content.decode()[:2000]
    assert "Lines that will move" in preview.content.decode()
    done = client.post(
        f"/sub-accounts/{source.pk}/request-merge/",
        {"target_id": "Zulu Target", "confirm_name": "Zulu Target", "confirm": "1"},
    )
    assert done.status_code == 302
    merge = MergeRequest.objects.get()
    assert merge.target_id == last.pk
    assert [s.sub_account_id for s in merge.sources.all()] == [source.pk]


def test_other_sources_are_added_by_name(world):
    partner, source, _last, client = world
    extra = SubAccount.objects.get(partner=partner, name="Bulk 1150")
    added = client.post(
        f"/sub-accounts/{source.pk}/request-merge/",
        {"target_id": "Zulu Target", "also_merge_name": "bulk 1150", "preview": "1"},
    )
    html = added.content.decode()
    assert added.status_code == 200, html[:2000]
    assert re.search(rf'name="also_merge" value="{extra.pk}"[^>]* checked', html)
    assert "Total into Zulu Target" in html
    done = client.post(
        f"/sub-accounts/{source.pk}/request-merge/",
        {
            "target_id": "Zulu Target",
            "also_merge": [str(extra.pk)],
            "confirm_name": "zulu target",
            "confirm": "1",
        },
    )
    assert done.status_code == 302
    merge = MergeRequest.objects.get()
    assert {s.sub_account_id for s in merge.sources.all()} == {source.pk, extra.pk}


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("No Such Client", "No active sub-account is named “No Such Client”."),
        ("Elsewhere Client", "No active sub-account is named “Elsewhere Client”."),
    ],
)
def test_unknown_or_another_partners_name_is_a_clear_error(world, typed, message):
    _partner, source, _last, client = world
    make_sub_account(make_partner("Other Resellers"), "Elsewhere Client")
    response = client.post(
        f"/sub-accounts/{source.pk}/request-merge/", {"target_id": typed, "preview": "1"}
    )
    assert response.status_code == 422
    assert message in response.content.decode()
    deletion = client.post(
        f"/sub-accounts/{source.pk}/request-deletion/",
        {"line_disposition": "move", "move_to_id": typed},
    )
    assert deletion.status_code == 422
    assert message in deletion.content.decode()
    assert not MergeRequest.objects.exists() and not DeletionRequest.objects.exists()


def test_deletion_moves_lines_to_the_last_sub_account_by_name(world):
    _partner, source, last, client = world
    page = client.get(f"/sub-accounts/{source.pk}/request-deletion/")
    assert 'list="move-to-options"' in page.content.decode()
    suggestions = client.get(
        "/requests/sub-account-options/",
        {"for": "deletion", "list": "move-to-options", "move_to_id": "avail"},
    )
    assert 'value="Available"' in suggestions.content.decode()
    response = client.post(
        f"/sub-accounts/{source.pk}/request-deletion/",
        {"line_disposition": "move", "move_to_id": "Zulu Target", "reason": "Done"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert DeletionRequest.objects.get().move_to_id == last.pk


def test_a_small_partner_keeps_its_selects():
    partner = make_partner("Small Resellers")
    source = make_sub_account(partner, "Small A")
    fill(source, 1)
    make_sub_account(partner, "Small B")
    make_user(partner, "admin@small.example", "admin", password=PASSWORD)
    client = Client()
    assert client.login(email="admin@small.example", password=PASSWORD)
    assert (
        '<select name="target_id"'
        in client.get(f"/sub-accounts/{source.pk}/request-merge/").content.decode()
    )
    assert (
        '<select name="move_to_id"'
        in client.get(f"/sub-accounts/{source.pk}/request-deletion/").content.decode()
    )
