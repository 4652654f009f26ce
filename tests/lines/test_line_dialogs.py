"""The Move, bulk Move and Add new line dialogs opened from pages that went stale.

domain §7: the dialogs send where the page showed each line (``from_sub_account_id``),
so two people moving one line from pages drawn before either moved it get one
success and one clear refusal in the dialog; nothing is silently undone.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from portal.audit.models import AuditEvent
from portal.lines.models import Line
from portal.partners.models import SubAccount
from tests.factories import (
    assert_line_invariants,
    db_snapshot,
    make_lines,
    make_sub_account,
    make_user,
)

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def people(tenant) -> tuple[Client, Client]:
    """Two managers of the same partner, each in their own browser."""
    clients = []
    for name in ("ann", "bob"):
        client = Client()
        client.force_login(make_user(tenant.partner, f"{name}@acme.example", "manager"))
        clients.append(client)
    return clients[0], clients[1]


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def move_link(html: str, line: Line) -> str:
    """The Move link the page drew for ``line`` (with where the page showed it)."""
    match = re.search(rf'href="(/lines/{line.pk}/move/\?from=\d+)"', html)
    assert match, f"no Move link for line {line.pk}"
    return match.group(1)


def hidden(html: str, name: str) -> list[str]:
    return re.findall(rf'<input type="hidden" name="{name}" value="([^"]*)"', html)


def test_two_stale_move_dialogs_on_the_lines_page_one_wins_one_is_told(tenant, people):
    ann, bob = people
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    line = make_lines(tenant.partner, 1)[0]

    # Both draw the Lines page and open the Move dialog before either confirms.
    dialogs = []
    for person in people:
        link = move_link(page(person, "/lines/"), line)
        dialog = page(person, link) if person is ann else person.get(link, **HTMX).content.decode()
        assert hidden(dialog, "from_sub_account") == [str(line.sub_account_id)]
        dialogs.append(dialog)

    first = ann.post(
        f"/lines/{line.pk}/move/",
        {"sub_account": a.pk, "from_sub_account": hidden(dialogs[0], "from_sub_account")[0]},
        **HTMX,
    )
    assert first.status_code == 204
    assert first["HX-Redirect"]
    before = db_snapshot()

    second = bob.post(
        f"/lines/{line.pk}/move/",
        {"sub_account": b.pk, "from_sub_account": hidden(dialogs[1], "from_sub_account")[0]},
        **HTMX,
    )
    assert second.status_code == 422
    text = second.content.decode()
    assert 'role="alert"' in text
    assert f"Line {line.number} is no longer in “Available”: it was moved to " in text
    assert "“Client A – Sales” at " in text
    assert "Reload and try again." in text
    assert db_snapshot() == before
    line.refresh_from_db()
    assert line.sub_account_id == a.pk
    assert AuditEvent.objects.filter(action="line.move").count() == 1


def test_move_dialog_from_a_sub_account_page_carries_where_the_page_showed_the_line(tenant, people):
    ann, bob = people
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    line = make_lines(tenant.partner, 1)[0]
    ann.post(f"/lines/{line.pk}/move/", {"sub_account": a.pk})  # into A, no page behind
    line.refresh_from_db()
    assert line.sub_account_id == a.pk

    links = [move_link(page(p, f"/sub-accounts/{a.pk}/"), line) for p in people]
    assert links[0] == links[1] == f"/lines/{line.pk}/move/?from={a.pk}"
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")

    # Ann moves it back to Available; Bob's page still shows it in A.
    done = ann.post(f"/lines/{line.pk}/move/", {"sub_account": pool.pk, "from_sub_account": a.pk})
    assert done.status_code == 302
    before = db_snapshot()

    # Opening the dialog from the stale page already says so ...
    opened = bob.get(links[1], **HTMX).content.decode()
    assert f"{line.number} is no longer where your page shows it: it was moved to " in opened
    assert "“Available” at " in opened
    assert hidden(opened, "from_sub_account") == [str(a.pk)]
    # ... and confirming anyway is refused, not applied.
    refused = bob.post(
        f"/lines/{line.pk}/move/", {"sub_account": b.pk, "from_sub_account": a.pk}, **HTMX
    )
    assert refused.status_code == 422
    assert "is no longer in “Client A – Sales”: it was moved to “Available”" in (
        refused.content.decode()
    )
    assert db_snapshot() == before


def test_a_move_dialog_without_the_page_s_view_moves_from_wherever_the_line_is(tenant, people):
    """Backward compatible: a hand-made form without ``from_sub_account`` is not checked."""
    ann, _ = people
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    line = make_lines(tenant.partner, 1)[0]
    assert ann.post(f"/lines/{line.pk}/move/", {"sub_account": a.pk}).status_code == 302
    assert ann.post(f"/lines/{line.pk}/move/", {"sub_account": b.pk}).status_code == 302
    line.refresh_from_db()
    assert line.sub_account_id == b.pk


def test_two_stale_bulk_moves_one_wins_one_is_told_and_nothing_changes(tenant, people):
    ann, bob = people
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    lines = make_lines(tenant.partner, 3)
    ann.post(f"/lines/{lines[0].pk}/move/", {"sub_account": a.pk})
    chosen = [str(line.pk) for line in lines]

    # Both draw the Lines page (lines in two sub-accounts), select all three, open Move.
    dialogs = []
    for person in people:
        html = page(person, "/lines/")
        seen = hidden(html, "seen")
        assert f"{lines[0].pk}:{a.pk}" in seen
        query = {"line_ids": chosen, "seen": seen}
        dialog = person.get("/lines/move/", query, **HTMX)
        assert dialog.status_code == 200
        dialogs.append(dialog.content.decode())
    assert sorted(hidden(dialogs[0], "seen")) == sorted(
        f"{line.pk}:{line.sub_account_id}" for line in Line.objects.filter(pk__in=chosen)
    )

    first = ann.post(
        "/lines/move/",
        {"line_ids": chosen, "seen": hidden(dialogs[0], "seen"), "sub_account": b.pk},
        **HTMX,
    )
    assert first.status_code == 204
    before = db_snapshot()

    second = bob.post(
        "/lines/move/",
        {"line_ids": chosen, "seen": hidden(dialogs[1], "seen"), "sub_account": a.pk},
        **HTMX,
    )
    assert second.status_code == 422
    text = second.content.decode()
    assert "3 of the 3 lines moved since you saw them, so none was moved." in text
    assert f"Line {lines[0].number} is no longer in “Client A – Sales”: it was moved to " in text
    assert f"Line {lines[1].number} is no longer in “Available”: it was moved to " in text
    assert db_snapshot() == before
    assert set(Line.objects.filter(pk__in=chosen).values_list("sub_account_id", flat=True)) == {
        b.pk
    }
    assert_line_invariants([tenant.partner.pk])


def test_bulk_move_ignores_pairs_that_are_not_ids(tenant, people):
    ann, _ = people
    a = make_sub_account(tenant.partner, "A")
    lines = make_lines(tenant.partner, 2)
    response = ann.post(
        "/lines/move/",
        {
            "line_ids": [str(lines[0].pk), str(lines[1].pk)],
            "seen": ["x:y", f"{lines[0].pk}:²", f"{lines[1].pk}", f"{lines[1].pk}:0", ":"],
            "sub_account": a.pk,
        },
        **HTMX,
    )
    assert response.status_code == 204, response.content
    odd = ann.post(
        "/lines/move/",
        {"line_ids": [str(lines[0].pk), "²"], "seen": ["²:1"], "sub_account": a.pk},
        **HTMX,
    )
    assert odd.status_code == 422  # refused in the dialog, not a 500
    assert set(
        Line.objects.filter(pk__in=[ln.pk for ln in lines]).values_list("sub_account_id", flat=True)
    ) == {a.pk}


def test_two_stale_add_new_line_dialogs_one_wins_one_is_told(tenant, people):
    ann, bob = people
    a = make_sub_account(tenant.partner, "Client A – Sales")
    b = make_sub_account(tenant.partner, "Client B – Support")
    line = make_lines(tenant.partner, 1)[0]
    for person in people:
        assert person.get(f"/lines/{line.pk}/add/", **HTMX).status_code == 200

    first = ann.post(f"/lines/{line.pk}/add/", {"sub_account": a.pk, "label": "Desk"}, **HTMX)
    assert first.status_code == 204
    before = db_snapshot()
    second = bob.post(f"/lines/{line.pk}/add/", {"sub_account": b.pk, "label": "Rep"}, **HTMX)
    assert second.status_code == 422
    text = second.content.decode()
    assert f"Line {line.number} is not in Available any more: it was moved to " in text
    assert "“Client A – Sales” at " in text
    assert db_snapshot() == before


@pytest.mark.parametrize("seen", ["abc", "0", "-1", "9" * 30, "²"])
def test_a_tampered_from_field_is_a_clear_refusal_in_the_dialog(tenant, people, seen):
    ann, _ = people
    a = make_sub_account(tenant.partner, "A")
    line = make_lines(tenant.partner, 1)[0]
    opened = ann.get(f"/lines/{line.pk}/move/?from={seen}", **HTMX)
    assert opened.status_code == 200
    assert hidden(opened.content.decode(), "from_sub_account") == [str(line.sub_account_id)]
    before = db_snapshot()
    response = ann.post(
        f"/lines/{line.pk}/move/", {"sub_account": a.pk, "from_sub_account": seen}, **HTMX
    )
    assert response.status_code == 422
    assert "not found" in response.content.decode()
    assert db_snapshot() == before
