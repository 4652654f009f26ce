"""Managing a partner's users (invite, role, deactivate), passwords and login throttling."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import Client

from portal.accounts import services
from portal.accounts.models import LoginAttempt, Membership, User
from portal.audit.models import AuditEvent
from portal.core import clock
from portal.core.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited
from portal.core.principal import Principal
from portal.partners.models import Partner
from tests.factories import SYSTEM, make_partner, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def partner():
    return make_partner("Acme Resellers")


@pytest.fixture
def admin(partner):
    return make_user(partner, "admin@acme.example", "admin")


def as_user(user: User) -> Principal:
    return Principal.for_user(User.objects.get(pk=user.pk))


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


# --- Invitations ----------------------------------------------------------------------


def test_invite_creates_user_without_password_and_emails_a_working_link(
    partner, admin, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        user = services.user_invite(
            principal=as_user(admin),
            email="New.Person@Acme.example",
            role="manager",
            full_name="New Person",
            base_url="http://portal.example/",
        )
    assert user.email == "new.person@acme.example"
    assert not user.has_usable_password()
    assert Membership.objects.get(user=user).role == "manager"
    [event] = events("user.create")[1:]  # the first is the admin's own creation
    assert event.actor_id == admin.pk and event.partner_id == partner.pk
    assert event.data["after"] == {"email": "new.person@acme.example", "role": "manager"}

    [mail] = mailoutbox
    assert mail.to == ["new.person@acme.example"]
    assert "Acme Resellers" in mail.subject
    link = re.search(r"http://portal\.example/password-reset/(\S+)/(\S+)/", mail.body)
    assert link is not None
    assert default_token_generator.check_token(user, link.group(2))


def test_no_email_when_the_invitation_is_refused(partner, admin, mailoutbox):
    manager = make_user(partner, "manager@acme.example", "manager")
    with pytest.raises(Forbidden):
        services.user_invite(
            principal=as_user(manager),
            email="x@acme.example",
            role="viewer",
            base_url="http://portal.example",
        )
    with pytest.raises(Conflict, match="already exists"):
        services.user_invite(
            principal=as_user(admin),
            email="MANAGER@acme.example",
            role="viewer",
            base_url="http://portal.example",
        )
    assert mailoutbox == []
    assert not User.objects.filter(email="x@acme.example").exists()


# --- Roles ----------------------------------------------------------------------------


def test_role_change_records_one_event_with_before_and_after(partner, admin):
    viewer = make_user(partner, "viewer@acme.example", "viewer")
    services.user_role_change(principal=as_user(admin), user_id=viewer.pk, role="billing")
    assert Membership.objects.get(user=viewer).role == "billing"
    [event] = events("user.role_change")
    assert event.data["before"] == {"role": "viewer"}
    assert event.data["after"] == {"role": "billing"}
    assert event.object_id == str(viewer.pk) and event.partner_id == partner.pk

    # The same role again changes nothing and records nothing.
    services.user_role_change(principal=as_user(admin), user_id=viewer.pk, role="billing")
    assert len(events("user.role_change")) == 1


def test_role_change_refuses_unknown_roles_weaker_roles_and_other_partners(partner, admin):
    viewer = make_user(partner, "viewer@acme.example", "viewer")
    manager = make_user(partner, "manager@acme.example", "manager")
    stranger = make_user(make_partner("Rival"), "admin@rival.example", "admin")
    with pytest.raises(Invalid):
        services.user_role_change(principal=as_user(admin), user_id=viewer.pk, role="owner")
    with pytest.raises(Forbidden):
        services.user_role_change(principal=as_user(manager), user_id=viewer.pk, role="admin")
    with pytest.raises(NotFound):
        services.user_role_change(principal=as_user(admin), user_id=stranger.pk, role="viewer")
    with pytest.raises(NotFound):
        services.user_role_change(principal=as_user(admin), user_id="nope", role="viewer")
    assert Membership.objects.get(user=viewer).role == "viewer"
    assert Membership.objects.get(user=stranger).role == "admin"
    assert events("user.role_change") == []


def test_the_last_active_admin_cannot_demote_themselves(partner, admin):
    with pytest.raises(Conflict, match="last active admin"):
        services.user_role_change(principal=as_user(admin), user_id=admin.pk, role="manager")
    assert Membership.objects.get(user=admin).role == "admin"

    other = make_user(partner, "second@acme.example", "admin")
    services.user_role_change(principal=as_user(admin), user_id=admin.pk, role="manager")
    assert Membership.objects.get(user=admin).role == "manager"
    # Now ``other`` is the last one, whoever asks (staff included).
    staff = SYSTEM.acting_for(partner.pk)
    with pytest.raises(Conflict, match="last active admin"):
        services.user_role_change(principal=staff, user_id=other.pk, role="viewer")


def test_a_deactivated_admin_does_not_count_as_an_admin(partner, admin):
    other = make_user(partner, "second@acme.example", "admin")
    services.user_deactivate(principal=as_user(admin), user_id=other.pk)
    with pytest.raises(Conflict, match="last active admin"):
        services.user_role_change(principal=as_user(admin), user_id=admin.pk, role="viewer")
    # Demoting the deactivated admin is fine: it leaves the active admin in place.
    services.user_role_change(principal=as_user(admin), user_id=other.pk, role="viewer")


# --- Deactivation ---------------------------------------------------------------------


def test_deactivate_stops_logging_in_and_records_one_event(partner, admin):
    viewer = make_user(partner, "viewer@acme.example", "viewer", password="demo-pass-123")
    services.user_deactivate(principal=as_user(admin), user_id=viewer.pk)
    viewer.refresh_from_db()
    assert viewer.is_active is False
    [event] = events("user.deactivate")
    assert event.data["after"] == {"active": False}
    assert Client().login(username="viewer@acme.example", password="demo-pass-123") is False

    with pytest.raises(Conflict, match="already deactivated"):
        services.user_deactivate(principal=as_user(admin), user_id=viewer.pk)
    assert len(events("user.deactivate")) == 1

    services.user_reactivate(principal=as_user(admin), user_id=viewer.pk)
    viewer.refresh_from_db()
    assert viewer.is_active is True
    assert len(events("user.reactivate")) == 1
    with pytest.raises(Conflict, match="already active"):
        services.user_reactivate(principal=as_user(admin), user_id=viewer.pk)


def test_the_last_active_admin_cannot_be_deactivated(partner, admin):
    with pytest.raises(Conflict, match="cannot deactivate yourself"):
        services.user_deactivate(principal=as_user(admin), user_id=admin.pk)
    with pytest.raises(Conflict, match="last active admin"):
        services.user_deactivate(principal=SYSTEM.acting_for(partner.pk), user_id=admin.pk)
    admin.refresh_from_db()
    assert admin.is_active is True
    assert events("user.deactivate") == []

    make_user(partner, "second@acme.example", "admin")
    services.user_deactivate(principal=as_user(admin), user_id=admin.pk)
    admin.refresh_from_db()
    assert admin.is_active is False


def test_staff_users_are_not_managed_from_a_partner(partner, admin):
    staff = services.staff_create(principal=SYSTEM, email="ops@provider.example")
    with pytest.raises(NotFound):
        services.user_deactivate(principal=as_user(admin), user_id=staff.pk)


# --- Passwords ------------------------------------------------------------------------


def test_password_set_by_the_user_records_an_event_without_the_password(partner, admin):
    services.user_password_set(
        principal=as_user(admin), user=admin, password="a-new-pass-42", via="change"
    )
    admin.refresh_from_db()
    assert admin.check_password("a-new-pass-42")
    [event] = events("user.password_set")
    assert event.data == {"email": "admin@acme.example", "via": "change"}
    assert event.partner_id == partner.pk

    with pytest.raises(Invalid):
        services.user_password_set(principal=as_user(admin), user=admin, password="x", via="change")
    viewer = make_user(partner, "viewer@acme.example", "viewer")
    with pytest.raises(NotFound):
        services.user_password_set(
            principal=as_user(admin), user=viewer, password="a-new-pass-42", via="change"
        )
    assert len(events("user.password_set")) == 1


# --- Login throttling -----------------------------------------------------------------

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def fail(email: str, ip: str = "10.0.0.1", *, at: dt.datetime) -> None:
    with clock.frozen_at(at):
        services.login_failure_record(email=email, ip=ip)


def check(email: str, ip: str = "10.0.0.1", *, at: dt.datetime) -> None:
    with clock.frozen_at(at):
        services.login_throttle_check(email=email, ip=ip)


def test_five_failures_for_one_email_pause_it_for_fifteen_minutes():
    for i in range(4):
        fail("a@x.example", at=T0 + dt.timedelta(minutes=i))
    check("a@x.example", at=T0 + dt.timedelta(minutes=4))  # four failures: still allowed
    fail("a@x.example", at=T0 + dt.timedelta(minutes=4))
    with pytest.raises(RateLimited, match="15 minutes"):
        check("a@x.example", at=T0 + dt.timedelta(minutes=4, seconds=1))
    with pytest.raises(RateLimited, match="1 minute"):
        check("A@X.example", at=T0 + dt.timedelta(minutes=18, seconds=30))
    check("other@x.example", ip="10.0.0.2", at=T0 + dt.timedelta(minutes=5))  # others unaffected
    check("a@x.example", at=T0 + dt.timedelta(minutes=19, seconds=1))  # the pause is over


def test_failures_spread_over_more_than_the_window_do_not_pause():
    for i in range(6):
        fail("a@x.example", at=T0 + dt.timedelta(minutes=4 * i))
    check("a@x.example", at=T0 + dt.timedelta(minutes=21))


def test_twenty_failures_from_one_address_pause_that_address():
    for i in range(20):
        fail(f"user{i}@x.example", ip="10.9.9.9", at=T0 + dt.timedelta(seconds=i))
    with pytest.raises(RateLimited):
        check("fresh@x.example", ip="10.9.9.9", at=T0 + dt.timedelta(minutes=1))
    check("fresh@x.example", ip="10.9.9.10", at=T0 + dt.timedelta(minutes=1))


def test_success_clears_the_email_and_old_failures_are_pruned():
    for i in range(4):
        fail("a@x.example", at=T0 + dt.timedelta(seconds=i))
    services.login_success_record(email="A@x.example")
    assert not LoginAttempt.objects.filter(email="a@x.example").exists()
    fail("b@x.example", at=T0)
    fail("c@x.example", at=T0 + dt.timedelta(hours=2))
    assert list(LoginAttempt.objects.values_list("email", flat=True)) == ["c@x.example"]


# --- Pages: who may open them ---------------------------------------------------------

STAFF_PAGES = (
    "/staff/",
    "/staff/partners/",
    "/staff/partners/new/",
    "/staff/line-orders/",
    "/staff/inventory/",
    "/staff/approvals/",
)
SETTINGS_PAGES = (
    "/settings/",
    "/settings/users/",
    "/settings/users/invite/",
    "/settings/api-keys/",
    "/settings/api-keys/new/",
)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ["manager", "billing", "viewer"])
def test_only_admins_open_settings_and_only_staff_open_staff_pages(partner, admin, role):
    person = client_for(make_user(partner, f"{role}@acme.example", role))
    for path in SETTINGS_PAGES:
        assert person.get(path).status_code == 403, path
    for path in STAFF_PAGES:
        assert person.get(path).status_code == 404, path
    assert person.post("/staff/act-for/", {"partner_id": partner.pk}).status_code == 404
    assert "acting_partner_id" not in person.session

    boss = client_for(admin)
    for path in SETTINGS_PAGES:
        assert boss.get(path).status_code in (200, 302), path
    for path in STAFF_PAGES:
        assert boss.get(path).status_code == 404, path


def test_an_admin_cannot_reach_another_partners_users_or_keys(partner, admin):
    rival = make_partner("Rival")
    stranger = make_user(rival, "admin@rival.example", "admin")
    key = services.api_key_create(
        principal=SYSTEM.acting_for(rival.pk), name="rival key", role="viewer"
    )
    boss = client_for(admin)
    assert boss.get(f"/settings/users/{stranger.pk}/role/").status_code == 404
    assert boss.post(f"/settings/users/{stranger.pk}/deactivate/").status_code == 404
    assert boss.get(f"/settings/api-keys/{key.api_key.pk}/revoke/").status_code == 404
    assert boss.post(f"/settings/api-keys/{key.api_key.pk}/revoke/").status_code == 404
    stranger.refresh_from_db()
    key.api_key.refresh_from_db()
    assert stranger.is_active and key.api_key.revoked_at is None


def test_staff_without_a_partner_are_asked_to_choose_one(partner):
    staff = client_for(services.staff_create(principal=SYSTEM, email="ops@provider.example"))
    page = staff.get("/sub-accounts/")
    assert page.status_code == 200
    assert b"Choose a partner" in page.content and b"Act for Acme Resellers" in page.content
    refused = staff.post("/sub-accounts/new/", {"name": "Client – Use"})
    assert refused.status_code == 400
    refused = staff.get("/lines/", headers={"HX-Request": "true"})
    assert refused.status_code == 400 and refused["HX-Retarget"] == "#flash"

    chosen = staff.post("/staff/act-for/", {"partner_id": partner.pk, "next": "/lines/"})
    assert chosen.status_code == 302 and chosen["Location"] == "/lines/"
    assert staff.get("/sub-accounts/").status_code == 200
    assert b"Choose a partner" not in staff.get("/sub-accounts/").content
    # A foreign "next" is ignored; an unknown partner is not found.
    chosen = staff.post(
        "/staff/act-for/", {"partner_id": partner.pk, "next": "https://evil.example/"}
    )
    assert chosen["Location"] == "/sub-accounts/"
    assert staff.post("/staff/act-for/", {"partner_id": "99999"}).status_code == 404
    assert staff.post("/staff/act-for/stop/").status_code == 302
    assert "acting_partner_id" not in staff.session


def test_staff_partner_list_runs_a_fixed_number_of_queries(partner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    staff = client_for(services.staff_create(principal=SYSTEM, email="ops@provider.example"))

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert staff.get("/staff/partners/").status_code == 200
        return len(captured)

    few = queries()
    for i in range(5):
        make_partner(f"More {i}")
    assert queries() == few


def test_login_answers_429_while_paused():
    client = Client()
    for _ in range(5):
        response = client.post("/login/", {"username": "who@x.example", "password": "nope"})
        assert response.status_code == 200
    response = client.post("/login/", {"username": "who@x.example", "password": "nope"})
    assert response.status_code == 429
    assert b"Too many failed login attempts" in response.content


def test_a_refused_owner_email_leaves_no_partner_behind(partner, admin, mailoutbox):
    staff = client_for(services.staff_create(principal=SYSTEM, email="ops@provider.example"))
    form = {
        "name": "Fresh Lines Ltd",
        "timezone": "UTC",
        "currency": "USD",
        "line_price": "50.00",
        "default_daily_limit": "50",
        "owner_email": "ADMIN@acme.example",  # already Acme's admin
    }
    response = staff.post("/staff/partners/new/", form)
    assert response.status_code == 422
    assert response.context["form"].errors["owner_email"] == [
        "A user with email admin@acme.example already exists."
    ]
    assert not Partner.objects.filter(name="Fresh Lines Ltd").exists()
    assert not AuditEvent.objects.filter(
        action="partner.create", data__after__name="Fresh Lines Ltd"
    )
    assert mailoutbox == []
