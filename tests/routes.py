"""The page routes of the URLconf, walked: every URLPattern with a concrete URL built for it.

Shared by the route walks (CSRF, element ids, the page tenant wall): each builds a URL for
every page route from real objects, and a route with a path parameter the walk does not
know fails it, so a new route is covered as soon as it exists.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.contrib.contenttypes.models import ContentType
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from portal.accounts.models import ApiKey
from portal.accounts.services import api_key_authenticate
from portal.alerts.services import alert_rule_create
from portal.billing.invoicing import invoice_issue
from portal.billing.models import Statement
from portal.billing.periods import Cycle
from portal.billing.resale import resale_default_set, sub_account_resale_price_set
from portal.billing.terms import discount_grant
from portal.core.clock import frozen_at
from portal.lines.models import LineOrder
from portal.lines.services import line_move, line_order_create
from portal.notifications.models import Notification
from portal.partners.models import Partner
from portal.webhooks.services import webhook_endpoint_test
from portal.workflows.services.deletions import deletion_request_create
from portal.workflows.services.merges import merge_request_create
from tests.factories import (
    SYSTEM,
    make_lines,
    make_sub_account,
    make_tenant,
    make_user,
    make_webhook_endpoint,
)

NOT_PAGES = ("api/v1/",)  # bearer-key API: walked by tests/test_tenant_wall.py's table


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


def route_params(route: Route) -> list[str]:
    """The names of the route's path parameters, from the root down."""
    names = []
    for pattern in route.parts:
        for regex in (_ROUTE_PARAM, _REGEX_GROUP):
            names += [m["name"] for m in regex.finditer(str(pattern))]
    return names


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


def seed_route_objects(name: str, domain: str) -> tuple[Partner, Any, dict[str, str]]:
    """A partner with one object of every kind a page route names, and the values that
    fill the routes' path parameters with them: (partner, its admin user, values)."""
    tenant = make_tenant(name)
    partner = tenant.partner
    admin = make_user(partner, f"admin@{domain}", "admin")
    viewer = make_user(partner, f"viewer@{domain}", "viewer")
    principal = tenant.principal("admin")

    source = make_sub_account(partner, "Source – Sales")
    target = make_sub_account(partner, "Target – Sales")
    doomed = make_sub_account(partner, "Doomed – Sales")
    # Pages of a sub-account are walked on one no request locks: a locked one's
    # request forms answer 409 with the reason (issue 18 point 10), no form to check.
    free = make_sub_account(partner, "Free – Sales")
    lines = make_lines(partner, 2)
    # A client statement on the June invoice: a priced sub-account holding a line since May.
    with frozen_at(dt.datetime(2026, 5, 10, tzinfo=dt.UTC)):
        priced = make_sub_account(partner, "Priced – Sales")
        (held,) = make_lines(partner, 1)
        line_move(principal=SYSTEM, line_id=held.pk, sub_account_id=priced.pk)
        sub_account_resale_price_set(
            principal=SYSTEM.acting_for(partner.pk), sub_account_id=priced.pk, price="70.00"
        )
    order = line_order_create(principal=SYSTEM.acting_for(partner.pk), quantity=1, area_code="999")
    assert LineOrder.objects.get(pk=order.pk).status == "pending"
    # Resale prices (Billing → Resale prices, its rows), in force from June.
    with frozen_at(dt.datetime(2026, 5, 10, tzinfo=dt.UTC)):
        resale_default_set(principal=principal, price="65.00")
        sub_account_resale_price_set(principal=principal, sub_account_id=free.pk, price="80.00")
    cycle = Cycle(2026, 6, partner.timezone)
    with frozen_at(cycle.start):
        invoice = invoice_issue(principal=SYSTEM, partner=partner, cycle=cycle)
    with frozen_at(dt.datetime(2026, 6, 20, tzinfo=dt.UTC)):
        discount = discount_grant(
            principal=SYSTEM.acting_for(partner.pk), kind="percent", value="10", cycles=1
        )
    statement = Statement.objects.get(invoice=invoice, sub_account=priced)
    merge = merge_request_create(principal=principal, source_ids=[source.pk], target_id=target.pk)
    deletion = deletion_request_create(principal=principal, sub_account_id=doomed.pk)
    viewer_key = ApiKey.objects.get(pk=api_key_authenticate(tenant.keys["viewer"]).pk)
    rule = alert_rule_create(
        principal=principal, metric="response_rate", comparator="below", threshold="0.2"
    )
    endpoint = make_webhook_endpoint(partner)
    delivery = webhook_endpoint_test(principal=principal, endpoint_id=endpoint.pk)

    values = {
        "uidb64": urlsafe_base64_encode(force_bytes(admin.pk)),
        "token": default_token_generator.make_token(admin),
        "user_id": str(viewer.pk),
        "key_id": str(viewer_key.pk),
        "slug": partner.slug,
        "discount_id": str(discount.pk),
        "invoice_id": str(invoice.pk),
        "statement_id": str(statement.pk),
        "sub_account_id": str(free.pk),
        "order_id": str(order.pk),
        "line_id": str(lines[0].pk),
        "merge_request_id": str(merge.pk),
        "deletion_request_id": str(deletion.pk),
        "rule_id": str(rule.pk),
        "endpoint_id": str(endpoint.pk),
        "delivery_id": str(delivery.pk),
        # The admin's own inbox holds the June invoice's notification.
        "notification_id": str(Notification.objects.filter(recipient=admin).values("pk")[0]["pk"]),
        "action": "reject",
        "app_label": "accounts",
        "content_type_id": str(ContentType.objects.get_for_model(Partner).pk),
        "object_id": str(partner.pk),  # with content_type_id: admin's "view on site"
        "url": "no-such-admin-page/",  # admin's catch-all
    }
    return partner, admin, values
