"""The Audit log's "Sub-account" filter for a partner with more sub-accounts than a select
holds (issue 18 point 13): a search field with suggestions, the typed name resolved within
the partner, so the last of 1,200 can be chosen like the first."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.partners.choices import SELECT_LIMIT
from portal.partners.models import SubAccount
from tests.browser.conftest import PASSWORD
from tests.factories import make_partner, make_sub_account, make_user
from tests.workflows.support import fill

pytestmark = pytest.mark.django_db

MANY = 1200


@pytest.fixture
def world():
    partner = make_partner("Crowded Resellers")
    SubAccount.objects.bulk_create(
        SubAccount(partner=partner, name=f"Bulk {i:04d}") for i in range(MANY)
    )
    first = make_sub_account(partner, "Aardvark Client")
    fill(first, 1)
    last = make_sub_account(partner, "Zulu Client")  # far beyond any select's limit
    fill(last, 2)
    other = make_partner("Elsewhere")
    make_sub_account(other, "Zulu Elsewhere")
    make_user(partner, "admin@crowded.example", "admin", password=PASSWORD)
    client = Client()
    assert client.login(email="admin@crowded.example", password=PASSWORD)
    return last, client


def test_more_than_a_select_holds():
    assert MANY > SELECT_LIMIT


def test_the_filter_is_a_name_field_with_suggestions(world):
    _last, client = world
    page = client.get("/audit/").content.decode()
    assert 'list="audit-sub-account-options"' in page
    assert "<select" not in page.split('name="sub_account_name"')[0].rsplit("<label", 1)[-1]
    options = client.get("/audit/sub-account-options/", {"sub_account_name": "zulu"})
    text = options.content.decode()
    assert "Zulu Client" in text
    assert "Elsewhere" not in text  # another partner's names are never suggested


def test_a_typed_name_shows_that_sub_account_s_events_only(world):
    _last, client = world
    page = client.get("/audit/", {"sub_account_name": "zulu client"}).content.decode()
    assert "Zulu Client" in page
    assert "Aardvark Client" not in page
    assert page.count("<tr") - 1 >= 2  # its creation and its lines moved in


@pytest.mark.parametrize("name", ["Nobody Here", "Zulu Elsewhere"])
def test_an_unknown_or_foreign_name_is_an_error_and_shows_nothing(world, name):
    _last, client = world
    response = client.get("/audit/", {"sub_account_name": name})
    assert response.status_code == 200
    page = response.content.decode()
    assert f"No sub-account is named “{name}”." in page
    assert "Aardvark Client" not in page and "Zulu Client" not in page
