"""The scope narrows in one place: ``TenantQuerySet.visible_to``.

A partner first; then, for a principal with ``sub_account_ids`` (a partner's client,
domain §8.2; nothing sets it before issue 20), the rows of those sub-accounts only, for
models that name their sub-account field, the rows addressed to it for models addressed to
persons (notifications: a client's user reads its own, a client key none), and nothing of
the others.
"""

from __future__ import annotations

import dataclasses

import pytest
from django.apps import apps

from portal.audit.models import AuditEvent
from portal.core import clock
from portal.core.errors import NotFound
from portal.core.principal import Principal
from portal.core.tenancy import TenantQuerySet, person_field, sub_account_field
from portal.lines.models import AssignmentPeriod, Line, LineOrder
from portal.lines.services import line_move
from portal.notifications.models import Kind, Notification
from portal.partners.models import SubAccount
from portal.partners.selectors import available_pool
from tests.factories import SYSTEM, make_client_line, make_sub_account, make_user


def narrowed(principal: Principal, *subs: SubAccount) -> Principal:
    return dataclasses.replace(principal, sub_account_ids=frozenset(s.pk for s in subs))


@pytest.fixture
def subs(tenant) -> tuple[SubAccount, SubAccount]:
    """Two sub-accounts of the tenant: the client's and another."""
    mine = make_sub_account(tenant.partner, "Mine – Sales")
    return mine, make_sub_account(tenant.partner, "Theirs – Sales")


def test_a_narrowed_principal_sees_only_its_sub_accounts(tenant, other_tenant, subs):
    mine, theirs = subs
    admin = tenant.principal("admin")
    client = narrowed(admin, mine)
    pool = available_pool(tenant.partner.pk)
    assert set(SubAccount.objects.visible_to(admin)) == {pool, mine, theirs}
    assert list(SubAccount.objects.visible_to(client)) == [mine]
    for hidden in (theirs, pool):
        with pytest.raises(NotFound):
            SubAccount.objects.get_visible(client, hidden.pk, what="Sub-account")
    # Naming another partner's sub-account in the set does not cross the partner wall.
    foreign = make_sub_account(other_tenant.partner, "Foreign – Sales")
    assert list(SubAccount.objects.visible_to(narrowed(admin, mine, foreign))) == [mine]
    assert not SubAccount.objects.visible_to(narrowed(admin)).exists()


def test_lines_and_their_periods_narrow_by_sub_account(tenant, subs):
    mine, theirs = subs
    kept, other = make_client_line(mine), make_client_line(theirs)
    client = narrowed(tenant.principal("viewer"), mine)
    assert list(Line.objects.visible_to(client)) == [kept]
    with pytest.raises(NotFound):
        Line.objects.get_visible(client, other.pk, what="Line")
    assert {p.sub_account_id for p in AssignmentPeriod.objects.visible_to(client)} == {mine.pk}
    # A line is the client's while it is in one of its sub-accounts.
    line_move(principal=SYSTEM, line_id=kept.pk, sub_account_id=theirs.pk)
    assert not Line.objects.visible_to(client).exists()
    assert Line.objects.visible_to(narrowed(client, mine, theirs)).count() == 2


def test_a_model_without_a_sub_account_field_shows_a_narrowed_principal_nothing(tenant, subs):
    mine, _ = subs
    make_client_line(mine)
    admin = tenant.principal("admin")
    client = narrowed(admin, mine)
    # Orders belong to the partner; audit events carry a sub-account id but do not
    # declare it: neither is open to a client until someone decides what of it is.
    for model in (LineOrder, AuditEvent):
        assert sub_account_field(model) is None
        assert model.objects.visible_to(admin).exists()
        assert not model.objects.visible_to(client).exists()


def test_a_model_addressed_to_persons_shows_a_narrowed_person_its_own_rows(tenant, subs):
    mine, _ = subs
    partner = tenant.partner
    me, other = (make_user(partner, f"{n}@acme.example", "viewer") for n in ("me", "other"))

    def addressed(user: object) -> Notification:
        return Notification.objects.create(
            partner=partner,
            recipient=user,
            kind=Kind.STATEMENT_ISSUED,
            title="t",
            object_type="x",
            object_id="1",
            created_at=clock.now(),
        )

    own, _theirs, _shared = addressed(me), addressed(other), addressed(None)
    assert person_field(Notification) == "recipient_id"
    person = narrowed(Principal.for_user(me), mine)
    assert list(Notification.objects.visible_to(person)) == [own]
    # A key has no person behind it: narrowed, it sees none of them.
    assert not Notification.objects.visible_to(narrowed(tenant.principal("viewer"), mine))
    assert Notification.objects.visible_to(tenant.principal("viewer")).count() == 3


def test_staff_narrowed_below_a_partner_are_narrowed_too(tenant, subs):
    _, theirs = subs
    staff = narrowed(SYSTEM.acting_for(tenant.partner.pk), theirs)
    assert list(SubAccount.objects.visible_to(staff)) == [theirs]


def test_every_declared_sub_account_field_is_a_field_of_its_model():
    declared = {
        model: sub_account_field(model)
        for model in apps.get_models()
        if isinstance(model.objects.all(), TenantQuerySet) and sub_account_field(model)
    }
    assert declared[SubAccount] == "pk" and declared[Line] == "sub_account_id"
    for model, field in declared.items():
        if field != "pk":
            assert field in {f.attname for f in model._meta.concrete_fields}, (model, field)
