"""Every page route refuses a POST without a CSRF token (403), found by walking the URLconf.

The test builds a concrete URL for each route from real objects of a seeded partner. A
route with a path parameter the test does not know fails the test: a new route is
covered as soon as it exists, or someone has to say how to fill it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client
from django.utils.crypto import get_random_string

from portal.accounts.models import SecurityEvent
from portal.accounts.services import staff_create
from portal.partners.models import Partner
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from tests.factories import SYSTEM
from tests.routes import Route, UnknownParameter, build_url, page_routes, seed_route_objects

# Django's CSRF failure page (kept by portal.accounts.security.csrf_failure).
CSRF_REFUSAL = "CSRF verification failed"


@dataclass
class World:
    values: dict[str, str]
    partner: Partner
    admin_client: Client
    staff_client: Client

    def value_for(self, route: Route, param: str) -> str:
        """A real value for ``param`` of ``route``, or UnknownParameter."""
        if param == "request_id" and route.name:
            kind = "merge" if route.name.split(":")[-1].startswith("merge_") else "deletion"
            return self.values[f"{kind}_request_id"]
        if param == "object_id" and route.prefix.startswith("admin/") and "/r/" not in route.prefix:
            # admin/<app>/<model>/<object_id>/…: the first row of that model, if any.
            app_label, model_name = route.prefix.split("/")[1:3]
            model = apps.get_model(app_label, model_name)
            first = model._default_manager.order_by("pk").values_list("pk", flat=True).first()
            return str(first if first is not None else 1)
        if param in self.values:
            return self.values[param]
        raise UnknownParameter(f"{route.name or route.prefix}: no value for <{param}>")

    def client_for(self, route: Route) -> Client:
        staff_area = route.prefix.startswith(("admin/", "staff/"))
        return self.staff_client if staff_area else self.admin_client


def _logged_in(user: Any, acting_for: Partner | None = None) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    if acting_for is not None:
        session = client.session
        session[ACTING_PARTNER_SESSION_KEY] = acting_for.pk
        session.save()
    return client


@pytest.fixture
def world(db) -> World:
    partner, admin, values = seed_route_objects("Csrf Partner", "csrf.example")
    staff = staff_create(principal=SYSTEM, email="ops@csrf.example")
    return World(
        values=values,
        partner=partner,
        admin_client=_logged_in(admin),
        staff_client=_logged_in(staff, acting_for=partner),
    )


def _urls(world: World) -> list[tuple[Route, str]]:
    built, unknown = [], []
    for route in page_routes():
        try:
            built.append((route, build_url(route, world.value_for)))
        except UnknownParameter as exc:
            unknown.append(str(exc))
    assert not unknown, "Routes the CSRF test cannot fill in (add a value):\n" + "\n".join(unknown)
    return built


def test_every_page_route_refuses_a_post_without_a_csrf_token(world):
    urls = _urls(world)
    names = {route.name for route, _ in urls}
    # The walk reaches included and namespaced URLconfs, the admin and the staff area.
    for expected in (
        "accounts:login",
        "accounts:logout",
        "settings:user_deactivate",
        "staff:partner_billing_invoice_finalize",
        "workflows:merge_action",
        "lines:line_move",
        "admin:accounts_user_change",
        "web:healthz",
    ):
        assert expected in names, expected
    assert len(urls) > 150

    accepted = []
    for route, url in urls:
        response = world.client_for(route).post(url, {})
        if response.status_code != 403 or CSRF_REFUSAL not in response.content.decode():
            accepted.append(f"{url} ({route.name}): {response.status_code}")
    assert not accepted, "POST without a CSRF token was not refused:\n" + "\n".join(accepted)
    assert SecurityEvent.objects.filter(action="csrf.refused").count() == len(urls)
    # The refused POSTs left the sessions alone (logout without a token did nothing).
    assert world.admin_client.get("/sub-accounts/").status_code == 200
    assert world.staff_client.get("/staff/partners/").status_code == 200


def test_with_a_csrf_token_no_page_route_refuses_for_csrf(world):
    """The 403s above are the CSRF check's: with a token the same POSTs get past it."""
    urls = _urls(world)
    # Logging out ends the session the other requests use: those go last.
    urls.sort(key=lambda item: item[0].name in ("accounts:logout", "admin:logout"))
    for client in (world.admin_client, world.staff_client):
        token = get_random_string(32)
        client.cookies[settings.CSRF_COOKIE_NAME] = token
        client.defaults["HTTP_X_CSRFTOKEN"] = token
    refused = []
    for route, url in urls:
        response = world.client_for(route).post(url, {})
        if response.status_code == 403 and CSRF_REFUSAL in response.content.decode():
            refused.append(f"{url} ({route.name})")
    assert not refused, "Refused by CSRF despite a token:\n" + "\n".join(refused)
    assert not SecurityEvent.objects.filter(action="csrf.refused").exists()
