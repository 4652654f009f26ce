"""Typed confirmation of a merge (issue 18, point 6): names compare with dashes, spacing and
case normalised; staff approve a merge on a page that shows what will move and asks for
the target's name; the API's approve stays as it is."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.accounts.services import staff_create
from portal.core.text import comparable_name, names_match
from portal.partners.models import Partner
from portal.partners.services import sub_account_update
from portal.workflows.models import MergeRequest
from portal.workflows.services import merges
from tests.browser.conftest import PASSWORD
from tests.conftest import Api
from tests.factories import SYSTEM, db_snapshot, make_staff_key, make_user
from tests.workflows.support import merge_world

NAME = "Client ABC – Sales Campaign"


@pytest.mark.parametrize(
    "typed",
    [
        NAME,
        "Client ABC - Sales Campaign",  # hyphen-minus for the en dash
        "client abc – sales campaign",
        "CLIENT ABC — SALES CAMPAIGN",  # em dash
        "Client ABC \u2212 Sales Campaign",  # minus sign
        "Client ABC \u2012 Sales Campaign",  # figure dash
        "Client ABC \u2011 Sales Campaign",  # non-breaking hyphen
        "Client ABC-Sales Campaign",
        "  Client   ABC\u00a0–  Sales\tCampaign ",
        "Ｃｌｉｅｎｔ ABC – Sales Campaign",  # fullwidth letters (NFKC)
    ],
)
def test_a_name_matches_whatever_its_dashes_spacing_and_case(typed):
    assert names_match(typed, NAME)


@pytest.mark.parametrize(
    "typed", ["", "Client ABC", "Client ABC – Sales Campaigns", "Client ABD – Sales Campaign"]
)
def test_another_name_does_not_match(typed):
    assert not names_match(typed, NAME)


def test_comparable_name_is_one_hyphen_no_space_around_it_casefolded():
    assert comparable_name(" Client  ABC — Sales ") == "client abc-sales"
    assert comparable_name(None) == ""


def _client(partner: Partner, email: str, role: str) -> Client:
    make_user(partner, email, role, password=PASSWORD)
    client = Client()
    assert client.login(email=email, password=PASSWORD)
    return client


@pytest.fixture
def abc(db):
    world = merge_world("Confirming Partner", counts=(3, 2))
    world.target = sub_account_update(
        principal=SYSTEM.acting_for(world.partner.pk), sub_account=world.target, name=NAME
    )
    return world


def test_the_merge_form_takes_the_name_typed_with_a_hyphen(abc):
    manager = _client(abc.partner, "m@confirm.example", "manager")
    response = manager.post(
        f"/sub-accounts/{abc.sources[0].pk}/request-merge/",
        {
            "target_id": str(abc.target.pk),
            "confirm_name": "client abc - sales campaign",
            "confirm": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    merge = MergeRequest.objects.get()
    assert merge.target_id == abc.target.pk


@pytest.fixture
def staff_client(db) -> Client:
    staff_create(principal=SYSTEM, email="ops@provider.example", password=PASSWORD)
    client = Client()
    assert client.login(email="ops@provider.example", password=PASSWORD)
    return client


def _merge(world) -> MergeRequest:
    return merges.merge_request_create(
        principal=world.principal(),
        source_ids=[s.pk for s in world.sources],
        target_id=world.target.pk,
        reason="One client now",
    )


def test_staff_see_what_will_move_before_approving(abc, staff_client):
    merge = _merge(abc)
    queue = staff_client.get("/staff/approvals/").content.decode()
    assert f'href="/staff/approvals/merge/{merge.pk}/"' in queue
    page = staff_client.get(f"/staff/approvals/merge/{merge.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    for source, count in zip(abc.sources, (3, 2), strict=True):
        assert f'<th scope="row">{source.name}</th>' in html
        assert f'<td class="num">{count}</td>' in html
    assert f"Total into {NAME} (holds 1 lines now)" in html
    assert '<td class="num">5</td>' in html
    assert "A merge cannot be undone." in html
    assert "Type the target&#x27;s name to confirm" in html


def test_staff_approval_refuses_a_wrong_name_and_changes_nothing(abc, staff_client):
    merge = _merge(abc)
    before = db_snapshot()
    response = staff_client.post(
        f"/staff/approvals/merge/{merge.pk}/", {"confirm_name": "Client ABC"}
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert f"Type the target&#x27;s name, “{NAME}”, to confirm" in html
    assert 'aria-invalid="true"' in html
    assert db_snapshot() == before
    assert MergeRequest.objects.get(pk=merge.pk).status == "pending_approval"


def test_staff_approve_with_the_name_typed_with_a_hyphen(
    abc, staff_client, django_capture_on_commit_callbacks
):
    merge = _merge(abc)
    with django_capture_on_commit_callbacks():
        response = staff_client.post(
            f"/staff/approvals/merge/{merge.pk}/", {"confirm_name": "client abc - sales campaign"}
        )
    assert response.status_code == 302
    assert response.headers["Location"] == "/staff/approvals/"
    merge.refresh_from_db()
    assert merge.status == "approved"
    assert merge.lines_total == 5
    # Decided already: the page says so and offers no form.
    again = staff_client.get(f"/staff/approvals/merge/{merge.pk}/").content.decode()
    assert "there is nothing to approve" in again
    assert 'name="confirm_name"' not in again


def test_the_queue_no_longer_approves_a_merge_in_one_click(abc, staff_client):
    merge = _merge(abc)
    before = db_snapshot()
    response = staff_client.post(
        "/staff/approvals/",
        {"kind": "merge", "request_id": str(merge.pk), "action": "approve"},
    )
    assert response.status_code == 404
    assert db_snapshot() == before


def test_self_service_approval_on_the_request_page_asks_for_the_name(abc):
    Partner.objects.filter(pk=abc.partner.pk).update(self_service_requests=True)
    merge = _merge(abc)  # requested with the admin key
    second = _client(abc.partner, "second@confirm.example", "admin")
    page = second.get(f"/requests/merge/{merge.pk}/").content.decode()
    assert "Type the target's name to confirm" in page
    before = db_snapshot()
    refused = second.post(f"/requests/merge/{merge.pk}/approve/", {"confirm_name": "ABC"})
    assert refused.status_code == 422
    assert db_snapshot() == before
    approved = second.post(
        f"/requests/merge/{merge.pk}/approve/", {"confirm_name": "CLIENT ABC - SALES CAMPAIGN"}
    )
    assert approved.status_code == 302
    assert MergeRequest.objects.get(pk=merge.pk).status == "approved"


def test_the_api_approve_needs_no_typed_name(abc):
    merge = _merge(abc)
    staff = Api(make_staff_key())
    body = staff.ok_post(f"/merge-requests/{merge.pk}/approve", {})
    assert body["status"] == "approved"
