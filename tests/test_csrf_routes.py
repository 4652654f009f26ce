"""Every page route refuses a POST without a CSRF token (403), found by walking the URLconf.

The test builds a concrete URL for each route from real objects of a seeded partner. A
route with a path parameter the test does not know fails the test: a new route is
covered as soon as it exists, or someone has to say how to fill it in.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern
from django.utils.crypto import get_random_string
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from portal.accounts.models import ApiKey, SecurityEvent
from portal.accounts.services import api_key_authenticate, staff_create
from portal.billing.periods import Cycle
from portal.billing.services import discount_grant, invoice_issue
from portal.core.clock import frozen_at
from portal.lines.models import LineOrder
from portal.lines.services import line_order_create
from portal.partners.models import Partner
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from portal.workflows.services import deletion_request_create, merge_request_create
from tests.factories import SYSTEM, make_lines, make_sub_account, make_tenant, make_user

# Django's CSRF failure page (kept by portal.accounts.security.csrf_failure).
CSRF_REFUSAL = "CSRF verification failed"
NOT_PAGES = ("api/v1/",)  # bearer-key API: no cookies, so no CSRF (ninja exempts it)


@dataclass(frozen=True)
class Route:
    parts: tuple[Any, ...]  # the patterns from the root down to this route
    name: str | None  # namespaced, e.g. "settings:user_role"
    callback: Callable[..., Any]

    @property
    def prefix(self) -> str:
        return "".join(str(p) for p in self.parts)


def walk(patterns: list[Any], parts: tuple[Any, ...] = (), namespaces: tuple[str, ...] = ()):
    """Every URLPattern under ``patterns``, recursively through included URLconfs."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = (*namespaces, pattern.namespace) if pattern.namespace else namespaces
            yield from walk(pattern.url_patterns, (*parts, pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            name = ":".join((*namespaces, pattern.name)) if pattern.name else None
            yield Route((*parts, pattern.pattern), name, pattern.callback)
        else:  # pragma: no cover - Django has no other kind
            raise TypeError(pattern)


def page_routes() -> Iterator[Route]:
    static = settings.STATIC_URL.lstrip("/")
    for route in walk(get_resolver().url_patterns):
        prefix = route.prefix.lstrip("^")
        if prefix.startswith(NOT_PAGES) or prefix.startswith(static):
            continue
        yield route


_ROUTE_PARAM = re.compile(r"<(?:[^>:]+:)?(?P<name>[^>]+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>[^()]*\)")


class UnknownParameter(LookupError):
    pass


def build_url(route: Route, value_for: Callable[[Route, str], str]) -> str:
    """The route's URL with each path parameter filled in; it must resolve back to it."""
    pieces = []
    for pattern in route.parts:
        text = str(pattern)
        if isinstance(pattern, RoutePattern):
            pieces.append(_ROUTE_PARAM.sub(lambda m: value_for(route, m["name"]), text))
        else:
            text = _REGEX_GROUP.sub(
                lambda m: value_for(route, m["name"]), text.removeprefix("^").removesuffix("$")
            )
            assert not re.search(r"[\\()\[\]?*+|^$]", text), f"cannot fill regex {pattern}"
            pieces.append(text)
    url = "/" + "".join(pieces)
    match = resolve(url)
    assert match.func == route.callback, f"{url} resolves to {match.view_name}, not {route.name}"
    return url


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
    tenant = make_tenant("Csrf Partner")
    partner = tenant.partner
    admin = make_user(partner, "admin@csrf.example", "admin")
    viewer = make_user(partner, "viewer@csrf.example", "viewer")
    staff = staff_create(principal=SYSTEM, email="ops@csrf.example")
    principal = tenant.principal("admin")

    source = make_sub_account(partner, "Source – Sales")
    target = make_sub_account(partner, "Target – Sales")
    doomed = make_sub_account(partner, "Doomed – Sales")
    # Pages of a sub-account are walked on one no request locks: a locked one's
    # request forms answer 409 with the reason (issue 18 point 10), no form to check.
    free = make_sub_account(partner, "Free – Sales")
    lines = make_lines(partner, 2)
    order = line_order_create(principal=SYSTEM, partner=partner, quantity=1, area_code="999")
    assert LineOrder.objects.get(pk=order.pk).status == "pending"
    cycle = Cycle(2026, 6, partner.timezone)
    with frozen_at(cycle.start):
        invoice = invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)
    with frozen_at(dt.datetime(2026, 6, 20, tzinfo=dt.UTC)):
        discount = discount_grant(
            principal=SYSTEM, partner=partner, kind="percent", value="10", cycles=1
        )
    merge = merge_request_create(principal=principal, source_ids=[source.pk], target_id=target.pk)
    deletion = deletion_request_create(principal=principal, sub_account_id=doomed.pk)
    viewer_key = ApiKey.objects.get(pk=api_key_authenticate(tenant.keys["viewer"]).pk)

    values = {
        "uidb64": urlsafe_base64_encode(force_bytes(admin.pk)),
        "token": default_token_generator.make_token(admin),
        "user_id": str(viewer.pk),
        "key_id": str(viewer_key.pk),
        "slug": partner.slug,
        "discount_id": str(discount.pk),
        "invoice_id": str(invoice.pk),
        "sub_account_id": str(free.pk),
        "order_id": str(order.pk),
        "line_id": str(lines[0].pk),
        "merge_request_id": str(merge.pk),
        "deletion_request_id": str(deletion.pk),
        "action": "reject",
        "app_label": "accounts",
        "content_type_id": str(ContentType.objects.get_for_model(Partner).pk),
        "object_id": str(partner.pk),  # with content_type_id: admin's "view on site"
        "url": "no-such-admin-page/",  # admin's catch-all
    }
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
