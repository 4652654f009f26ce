"""Bad input to the request endpoints is a clear 4xx that changes nothing; pages by role."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.workflows.services import merges
from tests.browser.conftest import PASSWORD
from tests.conftest import Api
from tests.factories import db_snapshot, make_staff_key, make_user
from tests.workflows.support import merge_world

pytestmark = pytest.mark.django_db

HUGE = 2**70


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """No collectstatic in tests: pages name assets by their plain paths."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/merge-requests", {"source_ids": [HUGE], "target_id": 1}, 404),
        ("/merge-requests", {"source_ids": [], "target_id": 1}, 422),
        ("/merge-requests", {"source_ids": "1", "target_id": 1}, 422),
        ("/merge-requests", {"source_ids": [1], "target_id": "x"}, 422),
        ("/merge-requests", {"source_ids": [1], "target_id": 1, "extra": 1}, 422),
        ("/merge-requests", {"source_ids": [1], "target_id": 1, "reason": 5}, 422),
        ("/merge-requests/preview", {"source_ids": [-1], "target_id": HUGE}, 404),
        ("/deletion-requests", {"sub_account_id": HUGE}, 404),
        ("/deletion-requests", {"sub_account_id": 1, "line_disposition": "shred"}, 422),
        ("/deletion-requests", {"sub_account_id": "one"}, 422),
        ("/merge-requests/1/reject", {"reason": "\x00"}, 404),
        ("/merge-requests/99999999999999999999999/approve", {}, 422),
        ("/deletion-requests/0/restore", None, 404),
    ],
)
def test_bad_input_is_refused_cleanly(path, body, status):
    world = merge_world()
    api = Api(world.tenant.keys["admin"])
    before = db_snapshot()
    response = api.post(path, body)
    assert response.status_code in {status, 400, 404, 422}, response.content
    assert response.status_code < 500
    assert "detail" in response.json()
    assert db_snapshot() == before


def test_nul_in_a_reason_is_422():
    world = merge_world()
    request = merges.merge_request_create(
        principal=world.principal(), source_ids=[world.sources[0].pk], target_id=world.target.pk
    )
    staff = Api(make_staff_key())
    before = db_snapshot()
    response = staff.post(f"/merge-requests/{request.pk}/reject", {"reason": "bad\x00reason"})
    assert response.status_code == 422
    assert db_snapshot() == before


def _client(world, email: str, role: str) -> Client:
    make_user(world.partner, email, role, password=PASSWORD)
    client = Client()
    assert client.login(email=email, password=PASSWORD)
    return client


def test_requests_pages_by_role():
    world = merge_world()
    request = merges.merge_request_create(
        principal=world.principal(), source_ids=[world.sources[0].pk], target_id=world.target.pk
    )
    manager = _client(world, "m@pages.example", "manager")
    listing = manager.get("/requests/")
    assert listing.status_code == 200
    assert b"Requests" in listing.content
    detail = manager.get(f"/requests/merge/{request.pk}/")
    assert detail.status_code == 200
    assert b"Cancel request" in detail.content
    assert b"Approve" not in detail.content  # self-service is off: staff approve
    form = manager.get(f"/sub-accounts/{world.other.pk}/request-merge/")
    assert form.status_code == 200
    assert b"Merge into (target)" in form.content
    # A sub-account locked by the request offers no new request.
    locked = manager.get(f"/sub-accounts/{world.sources[0].pk}/")
    assert b"Request merge" not in locked.content

    viewer = _client(world, "v@pages.example", "viewer")
    assert b'href="/requests/"' not in viewer.get("/sub-accounts/").content
    assert viewer.get("/requests/").status_code == 403
    assert viewer.get(f"/sub-accounts/{world.other.pk}/request-deletion/").status_code == 403
    assert manager.post(f"/requests/merge/{request.pk}/explode/").status_code == 404


def test_merge_form_refuses_a_wrong_confirmation_in_place():
    world = merge_world()
    manager = _client(world, "m2@pages.example", "manager")
    before = db_snapshot()
    response = manager.post(
        f"/sub-accounts/{world.sources[0].pk}/request-merge/",
        {"target_id": str(world.target.pk), "confirm_name": "nope", "confirm": "1"},
    )
    assert response.status_code == 422
    assert "“Target – Sales”, to confirm" in response.content.decode()
    assert db_snapshot() == before
