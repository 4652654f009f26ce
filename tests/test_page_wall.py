"""The tenant wall for pages, generated from the URLconf (issue 17 point 5).

Every page route whose path names a partner's object is requested by our partner's admin
(and, under /staff/, by staff acting for our partner) with the *other* partner's object in
the path: it must answer exactly like a missing object, 404, on GET and on POST. The
routes come from the URLconf like the CSRF walk's, so a new page cannot forget the wall:
a route with a parameter this test does not know fails it until someone says what it is.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils.crypto import get_random_string

from portal.accounts.services import staff_create
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from tests.factories import SYSTEM, db_snapshot
from tests.routes import (
    Route,
    UnknownParameter,
    build_url,
    page_routes,
    route_params,
    seed_route_objects,
)

# Path parameters naming one partner's object: the wall applies to routes with any of them.
OWNED = {
    "sub_account_id",
    "line_id",
    "invoice_id",
    "order_id",
    "request_id",
    "merge_request_id",
    "deletion_request_id",
    "discount_id",
    "statement_id",
    "user_id",
    "key_id",
    "rule_id",
    "endpoint_id",
    "delivery_id",
    "notification_id",
}
# Path parameters that name no partner's object (words, tokens) or pick the partner
# itself (staff's /staff/partners/<slug>/: staff may open any partner's pages).
NOT_OWNED = {"action", "slug", "uidb64", "token"}
# Staff's own cross-partner areas, walked by the CSRF test only: the Django admin and the
# approvals queue (staff decide every partner's requests; /staff/partners/<slug>/… pages,
# which act for one partner, are walked).
NOT_WALKED = ("admin/", "staff/approvals/")


def _client(user, acting_for=None) -> Client:
    client = Client()
    client.force_login(user)
    if acting_for is not None:
        session = client.session
        session[ACTING_PARTNER_SESSION_KEY] = acting_for.pk
        session.save()
    token = get_random_string(32)
    client.cookies[settings.CSRF_COOKIE_NAME] = token
    client.defaults["HTTP_X_CSRFTOKEN"] = token
    return client


@pytest.fixture
def wall(db):
    ours, our_admin, our_values = seed_route_objects("Our Partner", "ours.example")
    _theirs, _their_admin, their_values = seed_route_objects("Their Partner", "theirs.example")
    staff = staff_create(principal=SYSTEM, email="ops@wall.example")

    def value_for(route: Route, param: str) -> str:
        if param == "slug":
            return our_values["slug"]  # staff act for our partner; the object is theirs
        if param == "request_id" and route.name:
            kind = "merge" if route.name.split(":")[-1].startswith("merge_") else "deletion"
            return their_values[f"{kind}_request_id"]
        if param in their_values and (param in OWNED or param in NOT_OWNED):
            return their_values[param]
        raise UnknownParameter(f"{route.name or route.prefix}: no value for <{param}>")

    routes, unknown = [], []
    for route in page_routes():
        if route.prefix.lstrip("^").startswith(NOT_WALKED):
            continue
        params = set(route_params(route))
        if not params & OWNED:
            continue
        try:
            routes.append((route, build_url(route, value_for)))
        except UnknownParameter as exc:
            unknown.append(str(exc))
    assert not unknown, "Page routes the wall cannot fill in (add the parameter):\n" + "\n".join(
        unknown
    )
    clients = {"admin": _client(our_admin), "staff": _client(staff, acting_for=ours)}
    return routes, clients, our_values


def _client_for(route: Route, clients: dict[str, Client]) -> Client:
    return clients["staff"] if route.prefix.startswith("staff/") else clients["admin"]


def test_the_wall_walks_every_kind_of_page(wall):
    routes, _clients, _values = wall
    names = {route.name for route, _ in routes}
    for expected in (
        "partners:sub_account_detail",
        "partners:sub_account_edit",
        "lines:line_move",
        "billing:invoice_detail",
        "billing:resale_price_row",
        "billing:statement_detail",
        "billing:statement_pdf",
        "workflows:merge_action",
        "settings:user_deactivate",
        "settings:webhook_detail",
        "settings:webhook_delivery_retry",
        "staff:partner_billing_invoice_finalize",
        "staff:partner_billing_discount_remove",
        "alerts:rule_edit",
        "analytics:capacity_move",
        "notifications:notification_read",
    ):
        assert expected in names, expected
    assert len(routes) >= 20


def test_another_partners_object_in_a_page_path_answers_like_a_missing_one(wall):
    routes, clients, _values = wall
    leaks = []
    for route, url in routes:
        client = _client_for(route, clients)
        got = client.get(url)
        if got.status_code not in (404, 405):  # 405: a POST-only route, nothing read
            leaks.append(f"GET {url} ({route.name}): {got.status_code}")
        posted = client.post(url, {})
        if posted.status_code not in (404, 405) or (
            got.status_code == 405 and posted.status_code != 404
        ):
            leaks.append(f"POST {url} ({route.name}): {posted.status_code}")
    assert not leaks, "Another partner's object was not answered 404:\n" + "\n".join(leaks)


def test_our_own_objects_open(wall):
    """The same routes with our own objects do not answer 404: the 404s above are the
    wall's, not broken URLs."""
    routes, clients, values = wall
    missing = []
    for route, _url in routes:

        def ours(route: Route, param: str) -> str:
            if param == "request_id":
                kind = "merge" if route.name.split(":")[-1].startswith("merge_") else "deletion"
                return values[f"{kind}_request_id"]
            return values[param]

        url = build_url(route, ours)
        client = _client_for(route, clients)
        got = client.get(url)
        if got.status_code == 405:
            continue  # POST-only: the POST would change our objects; the GETs suffice
        if route.name == "billing:invoice_section":
            continue  # our June invoice has no section of a sub-account made in December
        if got.status_code == 404:
            missing.append(f"GET {url} ({route.name})")
    assert not missing, "Our own objects answered 404:\n" + "\n".join(missing)


# --- A partner's client (domain §8.2) -------------------------------------------------------


@pytest.fixture
def client_wall(db):
    """Our partner's client, granted a sub-account of its own (with a line), and every
    page route with an object in its path, built with our partner's objects (none in the
    grant) and with the other partner's."""
    from portal.accounts.services import user_create
    from portal.lines.services import line_move
    from portal.web.decorators import CLIENT_PAGES, CLIENT_POSTS
    from tests.factories import make_lines, make_sub_account

    ours, _our_admin, our_values = seed_route_objects("Our Partner", "ours.example")
    _theirs, _their_admin, their_values = seed_route_objects("Their Partner", "theirs.example")
    granted = make_sub_account(ours, "Client – Own")
    (line,) = make_lines(ours, 1)
    line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=granted.pk)
    user = user_create(
        principal=SYSTEM.acting_for(ours.pk),
        email="client@ours.example",
        role="client",
        password="demo-pass-123",
        sub_account_ids=[granted.pk],
    )
    own = {"sub_account_id": str(granted.pk), "line_id": str(line.pk)}

    def filler(values: dict[str, str]):
        def value_for(route: Route, param: str) -> str:
            if param == "slug":
                return our_values["slug"]
            if param == "request_id":
                kind = "merge" if route.name.split(":")[-1].startswith("merge_") else "deletion"
                return values[f"{kind}_request_id"]
            if param in values:
                return values[param]
            raise UnknownParameter(f"{route.name or route.prefix}: no value for <{param}>")

        return value_for

    routes = []
    for route in page_routes():
        if route.prefix.lstrip("^").startswith(NOT_WALKED):
            continue
        if not set(route_params(route)) & OWNED:
            continue
        missing = {**our_values, **{p: "987654321" for p in OWNED | {"request_id"}}}
        routes.append(
            (
                route,
                {
                    "partner's other": build_url(route, filler(our_values)),
                    "another partner's": build_url(route, filler(their_values)),
                    "missing": build_url(route, filler(missing)),
                },
            )
        )
    own_values = {**our_values, **own}
    return routes, _client(user), own_values, CLIENT_PAGES, CLIENT_POSTS


def test_a_clients_login_finds_every_object_outside_its_grant_missing(client_wall):
    """A client page naming anything but the client's own answers 404 like a missing
    object; every other page is an area a client never has, 403 whatever it names; a POST
    is refused (a client changes nothing), but for marking its own notifications read,
    where another's answers 404 like a missing one; nothing changes."""
    routes, client, _own, client_pages, client_posts = client_wall
    before = db_snapshot()
    leaks = []
    for route, urls in routes:
        expected = 404 if route.name in client_pages else 403
        for whose, url in urls.items():
            got = client.get(url)
            if got.status_code != expected and not (expected == 403 and got.status_code == 405):
                leaks.append(f"GET {url} ({route.name}, {whose}): {got.status_code}")
            posted = client.post(url, {})
            refused = {404} if route.name in client_posts else {403, 405}
            if posted.status_code not in refused:
                leaks.append(f"POST {url} ({route.name}, {whose}): {posted.status_code}")
    assert not leaks, "A client was not answered as for a missing object:\n" + "\n".join(leaks)
    assert db_snapshot() == before


def test_a_clients_own_objects_open_on_its_pages(client_wall):
    routes, client, own, client_pages, _client_posts = client_wall
    opened = []
    for route, _urls in routes:
        if route.name not in client_pages or "statement_id" in route_params(route):
            continue  # its statements' pages: tests/test_client_access.py
        url = build_url(route, lambda _route, param: own[param])
        assert client.get(url).status_code == 200, url
        opened.append(route.name)
    assert "partners:sub_account_detail" in opened and "analytics:sub_account" in opened
