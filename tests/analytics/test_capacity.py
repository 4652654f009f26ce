"""Capacity advice (domain §8.4): per sub-account, the lines to add so that the window's
busiest day would have stayed at or under the target usage, or how many could go back to
Available without passing it, and the idle lines; the API, the column beside the
comparison, and its link to the Move dialog with those lines chosen."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from django.test import Client

from portal.analytics.advice import capacity_advice_list
from portal.core import clock
from portal.lines.models import Line
from portal.partners.models import SubAccount
from tests.analytics.support import T0, assign_at, event, ingest, lines_at, merge_at, utc
from tests.conftest import Api
from tests.factories import SYSTEM, make_sub_account, make_user

pytestmark = pytest.mark.django_db

NOW = utc("2025-03-05 15:00")


def new_conversations(tag: str, line, count: int, at: str) -> list[dict]:
    return [
        event(f"{tag}-{i}", line, "outbound", f"+1415{abs(hash((tag, i))) % 10**7:07d}", utc(at))
        for i in range(count)
    ]


@pytest.fixture
def fleet(tenant):
    """Alpha is too small (8 new conversations on 5 March for limits 4 + 4), Beta too big
    (4 on one line of limits 10 + 10 + 5, two of them idle), Gamma silent (one old line
    and one that arrived inside the window), Empty holds nothing; one line in Available."""
    partner = tenant.partner
    alpha, beta, gamma = (make_sub_account(partner, n) for n in ("Alpha", "Beta", "Gamma"))
    empty = make_sub_account(partner, "Empty")
    a1, a2, b1, b2, b3, g1, spare = lines_at(partner, 7, T0)
    for line in (a1, a2):
        assign_at(line, alpha, T0, daily_limit=4)
    assign_at(b1, beta, T0, daily_limit=10)
    assign_at(b2, beta, T0, daily_limit=10)
    assign_at(b3, beta, T0, daily_limit=5)
    assign_at(g1, gamma, T0, daily_limit=10)
    (late,) = lines_at(partner, 1, utc("2025-03-04 08:00"))
    assign_at(late, gamma, utc("2025-03-04 08:00"), daily_limit=10)
    with clock.frozen_at(utc("2025-03-05 12:00")):
        assert not ingest(
            *new_conversations("a1", a1, 4, "2025-03-05 09:00"),
            *new_conversations("a2", a2, 4, "2025-03-05 09:00"),
            *new_conversations("a1-before", a1, 2, "2025-03-04 09:00"),
            *new_conversations("b1", b1, 4, "2025-03-05 09:00"),
        ).rejected
    return {
        "partner": partner,
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
        "empty": empty,
        "spare": spare,
        "beta_lines": (b1, b2, b3),
        "gamma_lines": (g1, late),
    }


def test_the_advice_per_sub_account(tenant, fleet):
    with clock.frozen_at(NOW):
        response = Api(tenant.keys["viewer"]).get("/analytics/capacity", target="0.8", days=3)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["start"], body["end"], body["target"], body["count"]) == (
        "2025-03-03",
        "2025-03-05",
        0.8,
        4,
    )
    items = {i["name"]: i for i in body["items"]}
    assert [i["name"] for i in body["items"]] == ["Alpha", "Beta", "Empty", "Gamma"]
    # Alpha: 8 new on its busiest day need 10 of limits at 80 %; it has 8: one line of the
    # default limit (50) more.
    assert items["Alpha"] == {
        "sub_account_id": fleet["alpha"].pk,
        "name": "Alpha",
        "lines": 2,
        "busiest_day": "2025-03-05",
        "busiest_day_usage": 1.0,
        "suggested_change": 1,
        "idle_lines": 0,
    }
    # Beta: 4 need 5; the two idle lines (5, then 10) can go, the busy one stays.
    assert items["Beta"]["suggested_change"] == -2
    assert items["Beta"]["idle_lines"] == 2
    assert items["Beta"]["busiest_day_usage"] == 0.16
    # Gamma: nothing to carry; its line that came inside the window is not idle.
    assert items["Gamma"] == {
        "sub_account_id": fleet["gamma"].pk,
        "name": "Gamma",
        "lines": 2,
        "busiest_day": None,
        "busiest_day_usage": 0.0,
        "suggested_change": -2,
        "idle_lines": 1,
    }
    assert items["Empty"]["lines"] == 0 and items["Empty"]["suggested_change"] == 0
    assert items["Empty"]["busiest_day_usage"] is None


def test_a_stricter_target_and_a_longer_window(tenant, fleet):
    with clock.frozen_at(NOW):
        body = Api(tenant.keys["admin"]).get("/analytics/capacity", target="0.4", days=30).json()
    beta = next(i for i in body["items"] if i["name"] == "Beta")
    # 4 ÷ 0.4 = 10 of limits: Beta keeps its busy line (10) alone.
    assert beta["suggested_change"] == -2
    alpha = next(i for i in body["items"] if i["name"] == "Alpha")
    assert alpha["suggested_change"] == 1  # 8 ÷ 0.4 = 20: one line of 50 more
    assert body["start"] == "2025-02-04"


def test_advice_follows_a_merge(tenant, fleet):
    merge_at([fleet["alpha"]], fleet["beta"], utc("2025-03-05 13:00"))
    with clock.frozen_at(NOW):
        body = Api(tenant.keys["admin"]).get("/analytics/capacity", days=3).json()
    names = [i["name"] for i in body["items"]]
    assert "Alpha" not in names
    beta = next(i for i in body["items"] if i["name"] == "Beta")
    # Beta now holds Alpha's lines and history: 12 new on 5 March.
    assert beta["lines"] == 5
    assert beta["busiest_day"] == "2025-03-05"
    assert SubAccount.objects.get(pk=fleet["alpha"].pk).merged_into_id == fleet["beta"].pk


@pytest.mark.parametrize(
    "query",
    [
        {"target": "0"},
        {"target": "1.5"},
        {"target": "-0.2"},
        {"target": "lots"},
        {"target": "0.12345"},
        {"target": "NaN"},
        {"days": 0},
        {"days": 367},
        {"days": "many"},
    ],
)
def test_bad_parameters_are_refused(tenant, query):
    response = Api(tenant.keys["admin"]).get("/analytics/capacity", **query)
    assert response.status_code == 422, response.content
    assert response.json()["detail"]


def test_the_list_is_paged_in_the_database(tenant, fleet):
    with clock.frozen_at(NOW):
        page = capacity_advice_list(
            principal=SYSTEM.acting_for(tenant.partner.pk), days=3, target="0.8", offset=1, limit=2
        )
    assert [a.name for a in page.items] == ["Beta", "Empty"] and page.count == 4


# --- The column beside the comparison, and its Move dialog ------------------------------


def browser_as(tenant, role: str) -> Client:
    user = make_user(tenant.partner, f"{role}@capacity.example", role)
    client = Client()
    client.force_login(user)
    return client


def test_the_comparison_shows_the_advice_and_links_writers_to_move(tenant, fleet):
    period = {"start": "2025-03-03", "end": "2025-03-05"}
    with clock.frozen_at(NOW):
        manager = browser_as(tenant, "manager").get("/analytics/", period)
        viewer = browser_as(tenant, "viewer").get("/analytics/", period)
    page = manager.content.decode()
    assert "Capacity advice" in page
    alpha_link = (
        f"/analytics/capacity/{fleet['alpha'].pk}/move/?start=2025-03-03&amp;end=2025-03-05"
    )
    assert alpha_link in page
    assert re.search(r"Add 1 line<span class=\"visually-hidden\"> to Alpha</span>", page)
    assert re.search(r"Return 2 lines<span class=\"visually-hidden\"> from Beta</span>", page)
    assert "2 idle" in page
    # A viewer reads the advice but has no Move link.
    seen = viewer.content.decode()
    assert "Return 2 lines" in seen and "/analytics/capacity/" not in seen


def test_the_link_opens_move_with_the_lines_chosen(tenant, fleet):
    client = browser_as(tenant, "manager")
    period = "?start=2025-03-03&end=2025-03-05"
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")
    with clock.frozen_at(NOW):
        back = client.get(
            f"/analytics/capacity/{fleet['beta'].pk}/move/{period}", HTTP_HX_REQUEST="true"
        )
        add = client.get(
            f"/analytics/capacity/{fleet['alpha'].pk}/move/{period}", HTTP_HX_REQUEST="true"
        )
    assert back.status_code == 200
    text = back.content.decode()
    _, b2, b3 = fleet["beta_lines"]
    assert "Move 2 lines" in text and "could return 2 lines to Available" in text
    chosen = set(re.findall(r'name="line_ids" value="(\d+)"', text))
    assert chosen == {str(b2.pk), str(b3.pk)}
    assert f'<option value="{pool.pk}" selected>Available</option>' in text
    # Adding: Available's one line, going to Alpha.
    text = add.content.decode()
    assert re.findall(r'name="line_ids" value="(\d+)"', text) == [str(fleet["spare"].pk)]
    assert f'<option value="{fleet["alpha"].pk}" selected>Alpha</option>' in text
    # Confirming moves them, as any bulk move.
    moved = client.post(
        "/lines/move/",
        {
            "line_ids": [b2.pk, b3.pk],
            "seen": [f"{b2.pk}:{fleet['beta'].pk}", f"{b3.pk}:{fleet['beta'].pk}"],
            "sub_account": pool.pk,
        },
        HTTP_HX_REQUEST="true",
    )
    assert moved.status_code == 204
    assert set(Line.objects.filter(sub_account=pool).values_list("pk", flat=True)) >= {b2.pk, b3.pk}


def test_the_link_is_for_people_who_move_lines_and_their_own_sub_accounts(
    tenant, other_tenant, fleet
):
    theirs = make_sub_account(other_tenant.partner, "Theirs")
    manager = browser_as(tenant, "manager")
    assert manager.get(f"/analytics/capacity/{theirs.pk}/move/").status_code == 404
    assert manager.get("/analytics/capacity/987654321/move/").status_code == 404
    viewer = browser_as(tenant, "viewer")
    assert viewer.get(f"/analytics/capacity/{fleet['beta'].pk}/move/").status_code == 403
    pool = SubAccount.objects.get(partner=tenant.partner, kind="available")
    refused = manager.get(f"/analytics/capacity/{pool.pk}/move/")
    assert refused.status_code == 422
    assert manager.get(f"/analytics/capacity/{fleet['beta'].pk}/move/?target=2").status_code == 422


def test_move_preselects_the_destination_given_as_to(tenant, fleet):
    client = browser_as(tenant, "admin")
    b1 = fleet["beta_lines"][0]
    gamma = fleet["gamma"]
    text = client.get(f"/lines/move/?line_ids={b1.pk}&to={gamma.pk}").content.decode()
    assert f'<option value="{gamma.pk}" selected>Gamma</option>' in text
    assert "+1" in text  # the chosen line is named by its number
    # Another partner's sub-account, or nonsense, preselects nothing.
    for junk in ("987654321", "x", "-1"):
        text = client.get(f"/lines/move/?line_ids={b1.pk}&to={junk}").content.decode()
        assert re.findall(r'<option value="(\d+)" selected>', text) == []


def test_a_principal_narrowed_to_some_sub_accounts_gets_advice_for_those_alone(tenant, fleet):
    narrowed = replace(tenant.principal("viewer"), sub_account_ids=frozenset({fleet["beta"].pk}))
    with clock.frozen_at(NOW):
        page = capacity_advice_list(principal=narrowed, days=3, target="0.8")
    assert [a.name for a in page.items] == ["Beta"] and page.count == 1


def test_a_client_reads_no_capacity_advice(tenant, fleet):
    from portal.core.errors import Forbidden
    from portal.core.roles import Role

    client = replace(
        tenant.principal("viewer"), role=Role.CLIENT, sub_account_ids=frozenset({fleet["beta"].pk})
    )
    with pytest.raises(Forbidden), clock.frozen_at(NOW):
        capacity_advice_list(principal=client, days=3, target="0.8")
