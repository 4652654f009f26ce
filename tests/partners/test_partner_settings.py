"""The partner's own settings (domain §2): the display name its clients see, self-service
approval of its requests, the default daily limit of new lines and the days a deleted
sub-account can be restored. One service (``partner_settings_update``), Settings → Partner,
and ``GET``/``PATCH /api/v1/partner``; admins (and staff acting for the partner) change
them, nobody else, and never another partner's."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.test import Client

from portal.accounts.models import User
from portal.accounts.services import staff_create
from portal.audit.describe import describe_events
from portal.audit.models import AuditEvent
from portal.billing.terms import partner_billing_update
from portal.core import clock
from portal.core.errors import BadRequest, Forbidden, Invalid
from portal.core.principal import Principal
from portal.lines.models import Line
from portal.lines.services import line_assign, line_move
from portal.partners.models import Partner
from portal.partners.selectors import available_pool
from portal.partners.services import partner_create, partner_settings_update
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from portal.workflows.policies import can_decide
from portal.workflows.services.deletions import deletion_request_approve, deletion_request_create
from portal.workflows.services.merges import merge_request_create
from tests.browser.conftest import PASSWORD
from tests.conftest import Api
from tests.factories import SYSTEM, db_snapshot, make_lines, make_sub_account, make_user

pytestmark = pytest.mark.django_db

URL = "/settings/partner/"


def _events(partner: Partner) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(partner_id=partner.pk, action="partner.settings_update").order_by(
            "pk"
        )
    )


def _fresh(partner: Partner) -> Partner:
    return Partner.objects.get(pk=partner.pk)


# --- The service ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("display_name", "Acme Connect"),
        ("self_service_requests", True),
        ("default_daily_limit", 250),
        ("deletion_retention_days", 90),
    ],
)
def test_an_admin_changes_each_setting_with_one_event_of_that_field(tenant, field, value):
    before = getattr(tenant.partner, field)
    partner = partner_settings_update(principal=tenant.principal("admin"), **{field: value})
    assert getattr(partner, field) == value
    assert getattr(_fresh(partner), field) == value
    [event] = _events(partner)
    assert event.data == {"before": {field: before}, "after": {field: value}}
    assert event.object_type == "partner"
    assert event.object_id == str(partner.pk)
    assert event.actor_label.startswith("key:")


def test_only_the_changed_fields_are_recorded_and_a_no_op_records_nothing(tenant):
    admin = tenant.principal("admin")
    partner_settings_update(
        principal=admin,
        display_name="  Acme Connect  ",  # trimmed
        default_daily_limit=50,  # unchanged
        deletion_retention_days=45,
    )
    [event] = _events(tenant.partner)
    assert event.data == {
        "before": {"display_name": "", "deletion_retention_days": 30},
        "after": {"display_name": "Acme Connect", "deletion_retention_days": 45},
    }
    assert _fresh(tenant.partner).display_name == "Acme Connect"
    before = db_snapshot()
    partner_settings_update(
        principal=admin, display_name="Acme Connect", self_service_requests=False
    )
    partner_settings_update(principal=admin)
    assert db_snapshot() == before
    assert len(_events(tenant.partner)) == 1


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"default_daily_limit": 0}, "default_daily_limit", "between 1 and 100,000"),
        ({"default_daily_limit": 100_001}, "default_daily_limit", "between 1 and 100,000"),
        ({"default_daily_limit": True}, "default_daily_limit", "whole number"),
        ({"default_daily_limit": "50"}, "default_daily_limit", "whole number"),
        ({"deletion_retention_days": 6}, "deletion_retention_days", "between 7 and 365"),
        ({"deletion_retention_days": 366}, "deletion_retention_days", "between 7 and 365"),
        ({"deletion_retention_days": 30.0}, "deletion_retention_days", "whole number"),
        ({"display_name": "A" * 121}, "display_name", "the most is 120"),
        ({"display_name": "Acme\u202eConnect"}, "display_name", "invisible or control"),
        ({"display_name": "Acme\x00"}, "display_name", "invisible or control"),
        ({"self_service_requests": "yes"}, "self_service_requests", "true or false"),
        ({"slug": "mine"}, None, "Unknown fields: slug"),
        ({"line_price": "1.00"}, None, "Unknown fields: line_price"),
    ],
)
def test_bad_values_are_refused_naming_the_field_and_change_nothing(tenant, changes, field, says):
    before = db_snapshot()
    with pytest.raises(Invalid) as refused:
        partner_settings_update(principal=tenant.principal("admin"), **changes)
    assert refused.value.field == field
    assert says in str(refused.value.detail)
    assert db_snapshot() == before


def test_the_bounds_themselves_are_accepted(tenant):
    admin = tenant.principal("admin")
    for limit, days in [(1, 7), (100_000, 365)]:
        partner = partner_settings_update(
            principal=admin, default_daily_limit=limit, deletion_retention_days=days
        )
        assert (partner.default_daily_limit, partner.deletion_retention_days) == (limit, days)
    assert partner_settings_update(principal=admin, display_name="D" * 120).display_name


def test_every_refused_field_is_reported_at_once(tenant):
    with pytest.raises(Invalid) as refused:
        partner_settings_update(
            principal=tenant.principal("admin"),
            display_name="A" * 121,
            default_daily_limit=0,
            deletion_retention_days=1000,
        )
    assert set(refused.value.errors) == {
        "display_name",
        "default_daily_limit",
        "deletion_retention_days",
    }


@pytest.mark.parametrize("role", ["manager", "billing", "viewer"])
def test_other_roles_are_refused(tenant, role):
    before = db_snapshot()
    with pytest.raises(Forbidden):
        partner_settings_update(principal=tenant.principal(role), self_service_requests=True)
    assert db_snapshot() == before


def test_staff_act_for_one_partner_and_the_partner_is_never_the_callers(tenant, other_tenant):
    staff = Principal.system("tests")
    with pytest.raises(BadRequest):
        partner_settings_update(principal=staff, self_service_requests=True)
    partner_settings_update(
        principal=staff.acting_for(other_tenant.partner.pk), self_service_requests=True
    )
    assert _fresh(other_tenant.partner).self_service_requests is True
    assert _fresh(tenant.partner).self_service_requests is False
    # An admin changes their own partner, whatever they might pass.
    with pytest.raises(Invalid):
        partner_settings_update(
            principal=tenant.principal("admin"), partner=other_tenant.partner, display_name="X"
        )


def test_partner_create_keeps_to_the_same_bounds(db):
    for kwargs in ({"default_daily_limit": 100_001}, {"deletion_retention_days": 3}):
        with pytest.raises(Invalid):
            partner_create(principal=SYSTEM, name="Bounded", **kwargs)
    assert not Partner.objects.filter(name="Bounded").exists()


def test_the_audit_log_says_it_in_words(tenant):
    partner_settings_update(
        principal=tenant.principal("admin"),
        display_name="Acme Connect",
        self_service_requests=True,
        default_daily_limit=1200,
    )
    [event] = describe_events(tenant.principal("admin"), _events(tenant.partner))
    assert event.action_label == "Partner settings changed"
    assert event.summary.startswith("Display name for clients none → “Acme Connect”; ")
    assert "self-service approvals no → yes" in event.summary
    assert "default daily limit for new lines 50 → 1,200" in event.summary


# --- Each setting takes effect -----------------------------------------------------------


def test_the_default_daily_limit_is_what_new_and_returning_lines_get(tenant):
    admin = tenant.principal("admin")
    sa = make_sub_account(tenant.partner, "Client – Sales")
    first, second = make_lines(tenant.partner, 2)
    line_assign(principal=admin, line_id=first.pk, sub_account_id=sa.pk, label="Desk")
    partner_settings_update(principal=admin, default_daily_limit=321)
    line_assign(principal=admin, line_id=second.pk, sub_account_id=sa.pk, label="Desk 2")
    assert Line.objects.get(pk=first.pk).daily_limit == 50  # lines keep theirs
    assert Line.objects.get(pk=second.pk).daily_limit == 321
    line_move(
        principal=admin, line_id=first.pk, sub_account_id=available_pool(tenant.partner.pk).pk
    )
    assert Line.objects.get(pk=first.pk).daily_limit == 321  # back in Available


def test_the_retention_days_set_the_purge_date_of_deletions_approved_from_then_on(tenant):
    staff = SYSTEM.acting_for(tenant.partner.pk)
    partner_settings_update(principal=tenant.principal("admin"), deletion_retention_days=10)
    sa = make_sub_account(tenant.partner, "Client – Old")
    request = deletion_request_create(principal=staff, sub_account_id=sa.pk)
    at = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
    with clock.frozen_at(at):
        approved = deletion_request_approve(principal=staff, request_id=request.pk)
    assert approved.purge_after == at + dt.timedelta(days=10)


def test_self_service_applies_to_requests_already_pending(tenant):
    partner = tenant.partner
    make_user(partner, "ann@acme.example", "admin")
    make_user(partner, "bob@acme.example", "admin")
    ann, bob = (
        Principal.for_user(User.objects.get(email=e))
        for e in ("ann@acme.example", "bob@acme.example")
    )
    request = merge_request_create(
        principal=ann,
        source_ids=[make_sub_account(partner, "Client – A").pk],
        target_id=make_sub_account(partner, "Client – B").pk,
    )
    assert not can_decide(bob, request, _fresh(partner))
    partner_settings_update(principal=ann, self_service_requests=True)
    assert can_decide(bob, request, _fresh(partner))
    assert not can_decide(ann, request, _fresh(partner))  # never one's own request


# --- The page ----------------------------------------------------------------------------


def _login(tenant, role: str) -> Client:
    email = f"{role}@acme.example"
    make_user(tenant.partner, email, role, password=PASSWORD)
    client = Client()
    assert client.login(email=email, password=PASSWORD)
    return client


def _form(partner: Partner, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "display_name": partner.display_name,
        "default_daily_limit": partner.default_daily_limit,
        "deletion_retention_days": partner.deletion_retention_days,
    }
    if partner.self_service_requests:
        data["self_service_requests"] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_the_page_shows_the_settings_by_their_labels_and_what_the_provider_sets(tenant):
    html = _login(tenant, "admin").get(URL).content.decode()
    for label in (
        "Display name for your clients",
        "Self-service approvals",
        "Default daily limit for new lines",
        "Days a deleted sub-account can be restored",
        "An admin other than the requester approves merges and deletions",
        "Set by your provider",
    ):
        assert label in html, label
    assert re.search(r'aria-current="page"[^>]*>Partner</a>', html)
    assert 'type="checkbox" name="self_service_requests"' in html
    assert 'name="default_daily_limit" value="50"' in html
    assert 'min="1"' in html and 'max="100000"' in html
    assert 'min="7"' in html and 'max="365"' in html
    assert 'maxlength="120"' in html
    for shown in ("Acme Resellers", tenant.partner.slug, "UTC", "USD", "50.00 USD"):
        assert shown in html, shown
    assert "Leave it empty to use “Acme Resellers”" in html


def test_saving_the_page_changes_the_settings_and_says_so(tenant):
    client = _login(tenant, "admin")
    response = client.post(
        URL,
        _form(
            tenant.partner,
            display_name=" Acme Connect ",
            self_service_requests="on",
            default_daily_limit="75",
            deletion_retention_days="60",
        ),
        follow=True,
    )
    assert response.redirect_chain == [(URL, 302)]
    assert "Partner settings saved." in response.content.decode()
    partner = _fresh(tenant.partner)
    assert (
        partner.display_name,
        partner.self_service_requests,
        partner.default_daily_limit,
        partner.deletion_retention_days,
    ) == ("Acme Connect", True, 75, 60)
    [event] = _events(partner)
    assert event.actor_label == "admin@acme.example"
    # Unticking the box turns self-service off again (an unticked box sends nothing).
    client.post(URL, _form(partner, self_service_requests=None))
    assert _fresh(partner).self_service_requests is False


def test_the_page_shows_refusals_in_place_and_changes_nothing(tenant):
    client = _login(tenant, "admin")
    before = db_snapshot()
    response = client.post(
        URL,
        _form(
            tenant.partner,
            display_name="Acme\u202eConnect",
            default_daily_limit="0",
            deletion_retention_days="",
        ),
    )
    assert response.status_code == 422
    assert db_snapshot() == before
    html = response.content.decode()
    assert "There are 3 problems to fix" in html  # the form's own and the service's at once
    for field in ("display_name", "default_daily_limit", "deletion_retention_days"):
        assert f'id="id_{field}_error"' in html, field
        assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', html), field
    assert "Enter the number of days." in html
    assert "must be between 1 and 100,000" in html
    assert "invisible or control character" in html
    response = client.post(URL, _form(tenant.partner, default_daily_limit="0"))
    assert response.status_code == 422
    assert "must be between 1 and 100,000" in response.content.decode()
    assert 'value="0"' in response.content.decode()  # what was typed stays


def test_an_empty_or_garbled_post_is_a_422_not_an_error(tenant):
    client = _login(tenant, "admin")
    before = db_snapshot()
    assert client.post(URL, {}).status_code == 422
    response = client.post(URL, _form(tenant.partner, default_daily_limit="lots"))
    assert response.status_code == 422
    assert "must be a whole number" in response.content.decode()
    assert db_snapshot() == before


@pytest.mark.parametrize("role", ["manager", "billing", "viewer"])
def test_the_page_is_for_admins_only(tenant, role):
    client = _login(tenant, role)
    assert client.get(URL).status_code == 403
    before = db_snapshot()
    assert client.post(URL, _form(tenant.partner, self_service_requests="on")).status_code == 403
    assert db_snapshot() == before


def test_staff_acting_for_the_partner_use_the_page(tenant, other_tenant):
    staff = staff_create(principal=SYSTEM, email="ops@provider.example")
    client = Client()
    client.force_login(staff)
    session = client.session
    session[ACTING_PARTNER_SESSION_KEY] = tenant.partner.pk
    session.save()
    assert "Acme Resellers" in client.get(URL).content.decode()
    response = client.post(URL, _form(tenant.partner, deletion_retention_days="14"))
    assert response.status_code == 302
    assert _fresh(tenant.partner).deletion_retention_days == 14
    assert _fresh(other_tenant.partner).deletion_retention_days == 30


# --- The API -----------------------------------------------------------------------------

FIELDS = {
    "name",
    "slug",
    "display_name",
    "timezone",
    "currency",
    "line_price",
    "default_daily_limit",
    "deletion_retention_days",
    "self_service_requests",
}


@pytest.mark.parametrize("role", ["admin", "manager", "billing", "viewer"])
def test_every_key_reads_its_partner_and_viewers_see_no_price(tenant, role):
    response = Api(tenant.keys[role]).get("/partner")
    assert response.status_code == 200
    body = response.json()
    if role == "viewer":
        assert set(body) == FIELDS - {"line_price"}
    else:
        assert set(body) == FIELDS
        assert body["line_price"] == "50.00"
    assert body["name"] == "Acme Resellers"
    assert body["display_name"] == ""
    assert body["default_daily_limit"] == 50
    assert body["deletion_retention_days"] == 30
    assert body["self_service_requests"] is False


def test_the_price_read_is_this_cycles_until_a_change_applies(tenant):
    partner_billing_update(
        principal=SYSTEM.acting_for(tenant.partner.pk), line_price=Decimal("55.00")
    )
    assert _fresh(tenant.partner).line_price == Decimal("55.00")
    assert Api(tenant.keys["admin"]).get("/partner").json()["line_price"] == "50.00"


def test_an_admin_key_patches_the_settings(tenant, other_tenant):
    other_before = list(Partner.objects.filter(pk=other_tenant.partner.pk).values())
    response = Api(tenant.keys["admin"]).patch(
        "/partner",
        {
            "display_name": "Acme Connect",
            "self_service_requests": True,
            "default_daily_limit": 500,
            "deletion_retention_days": 21,
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["display_name"] == "Acme Connect"
    assert body["self_service_requests"] is True
    assert (body["default_daily_limit"], body["deletion_retention_days"]) == (500, 21)
    assert body["line_price"] == "50.00"
    assert Api(tenant.keys["viewer"]).get("/partner").json()["display_name"] == "Acme Connect"
    assert list(Partner.objects.filter(pk=other_tenant.partner.pk).values()) == other_before
    assert len(_events(tenant.partner)) == 1
    assert _events(other_tenant.partner) == []


@pytest.mark.parametrize("role", ["manager", "billing", "viewer"])
def test_other_keys_may_not_patch(tenant, role):
    before = db_snapshot()
    response = Api(tenant.keys[role]).patch("/partner", {"self_service_requests": True})
    assert response.status_code == 403
    assert db_snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {"default_daily_limit": 0},
        {"default_daily_limit": 100_001},
        {"default_daily_limit": "50"},
        {"default_daily_limit": 50.5},
        {"deletion_retention_days": 6},
        {"deletion_retention_days": 366},
        {"self_service_requests": "true"},
        {"self_service_requests": 1},
        {"self_service_requests": None},
        {"display_name": None},
        {"display_name": "A" * 121},
        {"display_name": "Acme\u200bConnect"},
        {"name": "Renamed"},
        {"line_price": "1.00"},
        {"partner": "someone-else"},
    ],
    ids=str,
)
def test_bad_bodies_get_422_and_change_nothing(tenant, body):
    before = db_snapshot()
    response = Api(tenant.keys["admin"]).patch("/partner", body)
    assert response.status_code == 422, response.content
    assert response.json()["detail"]
    assert db_snapshot() == before


def test_staff_keys_name_the_partner(tenant, other_tenant, staff_key):
    staff = Api(staff_key)
    assert staff.get("/partner").status_code == 400
    assert staff.patch("/partner", {"deletion_retention_days": 8}).status_code == 400
    assert staff.get("/partner?partner=no-such-partner").status_code == 404
    slug = other_tenant.partner.slug
    response = staff.client.patch(
        f"/api/v1/partner?partner={slug}",
        '{"deletion_retention_days": 8}',
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == slug
    assert _fresh(other_tenant.partner).deletion_retention_days == 8
    assert _fresh(tenant.partner).deletion_retention_days == 30
    assert staff.get_with("/partner", {"partner": slug}).json()["line_price"] == "50.00"
