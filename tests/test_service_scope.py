"""Services take the partner they write in from the principal, never from their caller
(issue 17 point 4; STYLE 16): no argument aims them at another partner."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from portal.accounts.services import api_key_create, user_create, user_invite
from portal.alerts.services import alert_rule_create
from portal.audit.models import AuditEvent
from portal.billing.models import CreditEntry, Discount
from portal.billing.terms import credit_grant, discount_grant, partner_billing_update
from portal.core.errors import BadRequest, Invalid
from portal.core.principal import Principal
from portal.lines.services import line_order_create
from portal.partners.services import sub_account_create
from tests.factories import SYSTEM, db_snapshot, make_tenant

CALLS: dict[str, Callable[..., Any]] = {
    "sub_account_create": lambda p, **aim: sub_account_create(
        principal=p, name="Aimed – Sales", **aim
    ),
    "line_order_create": lambda p, **aim: line_order_create(
        principal=p, quantity=1, area_code="999", **aim
    ),
    "user_create": lambda p, **aim: user_create(
        principal=p, email="aimed@x.example", role="viewer", **aim
    ),
    "user_invite": lambda p, **aim: user_invite(
        principal=p, email="aimed@x.example", role="viewer", base_url="http://x.example", **aim
    ),
    "api_key_create": lambda p, **aim: api_key_create(
        principal=p, name="Aimed", role="viewer", **aim
    ),
    "discount_grant": lambda p, **aim: discount_grant(
        principal=p, kind="percent", value="10", **aim
    ),
    "credit_grant": lambda p, **aim: credit_grant(principal=p, amount="5", reason="x", **aim),
    "partner_billing_update": lambda p, **aim: partner_billing_update(
        principal=p, line_price="60.00", **aim
    ),
    "alert_rule_create": lambda p, **aim: alert_rule_create(
        principal=p, metric="available_lines", comparator="below", threshold=1, **aim
    ),
}
SERVICES = [
    sub_account_create,
    line_order_create,
    user_create,
    user_invite,
    api_key_create,
    discount_grant,
    credit_grant,
    partner_billing_update,
    alert_rule_create,
]
STAFF_ONLY = {"discount_grant", "credit_grant", "partner_billing_update"}


def _writes() -> tuple[Any, ...]:
    """What these services write, beyond db_snapshot's tables."""
    from portal.accounts.models import Membership, User
    from portal.partners.models import Partner

    return (
        db_snapshot(),
        list(Membership.objects.values_list("pk", "partner_id")),
        User.objects.count(),
        list(Discount.objects.values_list("pk", "partner_id")),
        list(CreditEntry.objects.values_list("pk", "partner_id")),
        list(Partner.objects.values_list("pk", "line_price")),
    )


@pytest.mark.parametrize("service", SERVICES, ids=lambda f: f.__name__)
def test_no_service_takes_a_partner_from_its_caller(service):
    assert not {"partner", "partner_id"} & set(inspect.signature(service).parameters)


@pytest.mark.parametrize("name", CALLS)
def test_a_principal_writes_only_in_its_own_partner(db, name):
    own, other = make_tenant("Own"), make_tenant("Other")
    principal: Principal = (
        SYSTEM.acting_for(own.partner.pk) if name in STAFF_ONLY else own.principal("admin")
    )
    before = _writes()
    for aim in ({"partner": other.partner}, {"partner_id": other.partner.pk}):
        # sub_account_create takes its details as keywords: "Unknown fields: partner".
        with pytest.raises((TypeError, Invalid)):
            CALLS[name](principal, **aim)
    assert _writes() == before
    last = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    CALLS[name](principal)
    written = AuditEvent.objects.filter(pk__gt=last).values_list("partner_id", flat=True)
    assert set(written) == {own.partner.pk}


@pytest.mark.parametrize("name", CALLS)
def test_staff_acting_for_no_partner_are_told_to_name_one(db, name):
    make_tenant("Someone")
    before = _writes()
    with pytest.raises(BadRequest, match="name the partner"):
        CALLS[name](SYSTEM)
    assert _writes() == before


def test_a_staff_key_belongs_to_no_partner_whoever_staff_act_for(db):
    own = make_tenant("Own")
    issued = api_key_create(principal=SYSTEM.acting_for(own.partner.pk), name="ops", staff=True)
    assert issued.api_key.is_staff and issued.api_key.partner_id is None
    with pytest.raises(Invalid):
        api_key_create(principal=SYSTEM, name="ops", role="viewer", staff=True)
