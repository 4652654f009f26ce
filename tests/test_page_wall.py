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
from tests.factories import SYSTEM
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
