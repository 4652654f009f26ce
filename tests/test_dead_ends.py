"""Issue 18 point 10: an action that cannot start says why, instead of a form or a
button that would only be refused on submit."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.lines.models import Line
from portal.partners.models import SubAccount
from tests.factories import force_state, make_lines, make_sub_account, make_user


def _client(tenant, role: str) -> Client:
    client = Client()
    client.force_login(make_user(tenant.partner, f"{role}@acme.example", role))
    return client


@pytest.fixture
def admin(tenant) -> Client:
    return _client(tenant, "admin")


def _pool(tenant) -> SubAccount:
    return SubAccount.objects.get(partner=tenant.partner, kind="available")


def _dead_end(client: Client, url: str, reason: str) -> None:
    response = client.get(url)
    html = response.content.decode()
    assert response.status_code == 409, (url, response.status_code)
    assert reason in html, html
    assert '<form method="post" class="card"' not in html
    assert 'name="reason"' not in html


@pytest.mark.parametrize(
    ("action", "verb"), [("request-merge", "merged"), ("request-deletion", "deleted")]
)
def test_available_cannot_be_merged_or_deleted(tenant, admin, action, verb):
    pool = _pool(tenant)
    _dead_end(
        admin,
        f"/sub-accounts/{pool.pk}/{action}/",
        f"Available cannot be {verb}: it holds every line not in a sub-account.",
    )


def test_available_notes_stay_editable(tenant, admin):
    assert admin.get(f"/sub-accounts/{_pool(tenant).pk}/edit/").status_code == 200


@pytest.mark.parametrize("action", ["edit", "request-merge", "request-deletion"])
def test_merged_sub_account_is_read_only(tenant, admin, action):
    target = make_sub_account(tenant.partner, "Client T – Sales")
    merged = force_state(
        make_sub_account(tenant.partner, "Client M – Sales"), status="merged", merged_into=target
    )
    _dead_end(
        admin,
        f"/sub-accounts/{merged.pk}/{action}/",
        "Client M – Sales was merged into Client T – Sales; it is read-only.",
    )


@pytest.mark.parametrize("action", ["edit", "request-merge", "request-deletion"])
def test_pending_deletion_is_read_only(tenant, admin, action):
    gone = force_state(
        make_sub_account(tenant.partner, "Client D – Sales"), status="pending_deletion"
    )
    _dead_end(admin, f"/sub-accounts/{gone.pk}/{action}/", "is pending deletion; it is read-only.")


@pytest.mark.parametrize("action", ["request-merge", "request-deletion"])
def test_locked_sub_account_says_by_what(tenant, admin, action):
    locked = force_state(
        make_sub_account(tenant.partner, "Client L – Sales"), lock_reason="merge request #7 is open"
    )
    _dead_end(
        admin,
        f"/sub-accounts/{locked.pk}/{action}/",
        "Client L – Sales is locked: merge request #7 is open.",
    )


def test_locked_sub_account_lines_have_no_live_move_or_disconnect(tenant, admin):
    locked = make_sub_account(tenant.partner, "Client L – Sales")
    free = make_sub_account(tenant.partner, "Client F – Sales")
    a, b = make_lines(tenant.partner, 2)
    Line.objects.filter(pk=a.pk).update(sub_account=locked)
    Line.objects.filter(pk=b.pk).update(sub_account=free)
    force_state(locked, line_count=1, lock_reason="merge request #7 is open")
    force_state(free, line_count=1)
    note = "Move and Disconnect unavailable: locked by merge request #7 is open"
    for url in (f"/sub-accounts/{locked.pk}/", "/lines/"):
        html = admin.get(url).content.decode()
        assert f"/lines/{a.pk}/move/" not in html, url
        assert f"/lines/{a.pk}/disconnect/" not in html, url
        assert f'name="line_ids" value="{a.pk}"' not in html, url
        assert note in html, url
    lines_page = admin.get("/lines/").content.decode()
    assert f"/lines/{b.pk}/move/" in lines_page
    assert f"/lines/{b.pk}/disconnect/" in lines_page


def test_viewer_is_not_told_to_use_an_action_they_lack(tenant, admin):
    pool = _pool(tenant)
    viewer = _client(tenant, "viewer")
    html = viewer.get(f"/sub-accounts/{pool.pk}/").content.decode()
    assert "Available holds every active line that is not in a sub-account." in html
    assert "Add new line" not in html
    assert "Add new line" in admin.get(f"/sub-accounts/{pool.pk}/").content.decode()
