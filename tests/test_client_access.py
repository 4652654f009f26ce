"""A partner's client (domain §8.2): granted sub-accounts, the wall around them, and no
wholesale figure in anything a client reads.

The wall is the tenant wall's table (``tests/test_tenant_wall.py``) replayed with a
client key granted one sub-account: the few operations a client has answer 200 for its
own objects and exactly like a missing object for every other id (the partner's other
sub-accounts and lines, Available, another partner's); every other operation answers
403 whatever it names, and nothing changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from pypdf import PdfReader

from portal.accounts.models import ApiKey, Membership, User
from portal.accounts.services import (
    api_key_authenticate,
    api_key_create,
    user_create,
    user_invite,
    user_role_change,
)
from portal.analytics.ingestion import message_events_ingest
from portal.audit.models import AuditEvent
from portal.billing.models import Invoice, Statement
from portal.billing.terms import discount_grant
from portal.core import clock
from portal.core.errors import Forbidden, Invalid
from portal.core.principal import Principal
from portal.lines.models import Line
from portal.lines.services import line_move
from portal.partners.models import Partner, SubAccount, SubAccountStatus
from portal.partners.selectors import available_pool
from portal.web.decorators import CLIENT_PAGES
from portal.workflows.services.deletions import (
    deletion_request_approve,
    deletion_request_create,
    deletion_request_purge,
)
from portal.workflows.services.merges import (
    merge_request_approve,
    merge_request_create,
    merge_request_run,
)
from tests.billing.statement_history import statement_history
from tests.conftest import Api
from tests.factories import (
    SYSTEM,
    db_snapshot,
    issue_invoice,
    make_lines,
    make_sub_account,
    make_tenant,
)
from tests.routes import build_url, page_routes
from tests.test_rate_limits import limits as limits
from tests.test_tenant_wall import (
    ENDPOINTS,
    MISSING_ID,
    Endpoint,
    Refs,
    World,
    _call,
    _same_answer,
)
from tests.test_tenant_wall import world as world

CLIENT_READS = {
    ("GET", "/sub-accounts"),
    ("GET", "/sub-accounts/{sub_account_id}"),
    ("GET", "/lines"),
    ("GET", "/lines/{line_id}"),
    ("GET", "/analytics/sub-accounts"),
    ("GET", "/sub-accounts/{sub_account_id}/analytics"),
    ("GET", "/statements"),
    ("GET", "/statements/{statement_id}"),
    ("GET", "/statements/{statement_id}/csv"),
    ("GET", "/statements/{statement_id}/pdf"),
}
CLIENT_READ_ENDPOINTS = [e for e in ENDPOINTS if e.key in CLIENT_READS]


def client_key(partner_id: int, *sub_account_ids: int, name: str = "Client") -> str:
    return api_key_create(
        principal=SYSTEM.acting_for(partner_id),
        name=name,
        role="client",
        sub_account_ids=list(sub_account_ids),
    ).raw


@dataclasses.dataclass
class ClientWorld:
    world: World
    key: str
    # The client's own objects: its sub-account, the line it holds, and the statement of
    # its other granted sub-account (the world's one statement).
    refs: Refs
    granted: list[int]
    # Ids a client must find missing: the partner's other objects, Available, another's.
    foreign: dict[str, list[int]]


@pytest.fixture
def cw(world) -> ClientWorld:
    own, theirs = world.own_refs, world.other_refs
    granted = own.other_sub_account_id  # holds own.other_line_id
    billed = Statement.objects.get(pk=own.statement_id).sub_account_id
    refs = dataclasses.replace(own, sub_account_id=granted, line_id=own.other_line_id)
    pool = available_pool(world.own.partner.pk).pk
    foreign = {
        "sub_account_id": [own.sub_account_id, pool, theirs.sub_account_id, MISSING_ID],
        "line_id": [own.line_id, theirs.line_id, theirs.other_line_id, MISSING_ID],
        "statement_id": [theirs.statement_id, MISSING_ID],
    }
    key = client_key(world.own.partner.pk, granted, billed)
    return ClientWorld(world, key, refs, [granted, billed], foreign)


def test_the_client_operations_are_served():
    assert len(CLIENT_READ_ENDPOINTS) == len(CLIENT_READS)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_client_reads_its_own_and_is_refused_everything_else(cw, endpoint: Endpoint):
    before = db_snapshot()
    response = _call(Api(cw.key), endpoint, cw.refs)
    if endpoint.key in CLIENT_READS:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 403, response.content
        assert response.json()["detail"]
    assert db_snapshot() == before


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if "{" in e.path], ids=str)
def test_any_id_outside_the_grant_answers_like_a_missing_one(cw, endpoint: Endpoint):
    """A client's operations find every other object missing; every other operation
    refuses alike whatever it names, so neither tells what exists."""
    client = Api(cw.key)
    before = db_snapshot()
    for param, ids in cw.foreign.items():
        if "{" + param + "}" not in endpoint.path:
            continue
        missing = client.call(endpoint.method, endpoint.url(cw.refs, **{param: MISSING_ID}))
        for foreign_id in ids:
            body = endpoint.body(cw.refs) if endpoint.body else None
            url = endpoint.url(cw.refs, **{param: foreign_id})
            foreign = client.call(endpoint.method, url, body)
            if endpoint.key in CLIENT_READS:
                assert foreign.status_code == 404, (url, foreign.content)
                _same_answer(foreign, missing, foreign_id)
            else:
                assert foreign.status_code == 403, (url, foreign.content)
    assert db_snapshot() == before


@pytest.mark.parametrize(
    ("endpoint", "build"),
    [
        pytest.param(e, build, id=f"{e} {name}")
        for e in CLIENT_READ_ENDPOINTS
        for name, _kind, build in e.references
    ],
)
def test_a_filter_outside_the_grant_finds_nothing(cw, endpoint: Endpoint, build):
    client = Api(cw.key)
    missing = client.get_with(endpoint.url(cw.refs), build(cw.refs, MISSING_ID))
    for foreign_id in cw.foreign["sub_account_id"]:
        foreign = client.get_with(endpoint.url(cw.refs), build(cw.refs, foreign_id))
        assert foreign.status_code == 200
        assert foreign.json()["count"] == 0
        _same_answer(foreign, missing, foreign_id)


CLIENT_SUB_ACCOUNT_FIELDS = {
    "id",
    "name",
    "status",
    "line_count",
    "contact_name",
    "contact_email",
    "contact_phone",
    "internal_reference",
    "merged_into_id",
    "created_at",
}


def test_a_client_reads_sub_accounts_in_its_own_shape_without_the_resellers_notes(cw):
    """domain §8.2 point 3: the client's own output shape, not the partner's with fields
    removed: no notes (the reseller's own words about its client), no kind, no price;
    the workspace page leaves the notes out too, while the partner's people see them."""
    granted = cw.refs.sub_account_id
    secret = "Pays late; ask for a deposit before adding lines"
    SubAccount.objects.filter(pk__in=cw.granted).update(notes=secret)
    client = Api(cw.key)
    listed = client.get("/sub-accounts").json()["items"]
    one = client.get(f"/sub-accounts/{granted}").json()
    for shape in [*listed, one]:
        assert set(shape) == CLIENT_SUB_ACCOUNT_FIELDS, shape
    partner_view = Api(cw.world.own.keys["admin"]).get(f"/sub-accounts/{granted}").json()
    assert partner_view["notes"] == secret and "kind" in partner_view

    person = User.objects.create_user(email="notes-client@example.com", password="pw-123456789")
    Membership.objects.create(partner=cw.world.own.partner, user=person, role="client")
    Membership.objects.get(user=person).sub_accounts.set([granted])
    browser = Client()
    browser.force_login(person)
    page = browser.get(reverse("partners:sub_account_detail", args=[granted]))
    assert page.status_code == 200
    assert "Pays late" not in page.content.decode()


def test_a_clients_lists_hold_only_its_grant(cw):
    client = Api(cw.key)
    granted = sorted(cw.granted)
    subs = client.get("/sub-accounts", limit=500).json()
    assert sorted(s["id"] for s in subs["items"]) == granted
    assert subs["count"] == 2
    assert all("resale_price" not in s for s in subs["items"])
    lines = client.get("/lines", limit=500).json()
    assert {line["sub_account_id"] for line in lines["items"]} == set(granted)
    assert cw.refs.line_id in {line["id"] for line in lines["items"]}
    analytics = client.get("/analytics/sub-accounts").json()
    assert sorted(row["sub_account_id"] for row in analytics["items"]) == granted
    assert analytics["count"] == 2
    statements = client.get("/statements", limit=500).json()
    assert cw.refs.statement_id in {s["id"] for s in statements["items"]}
    assert {s["sub_account_id"] for s in statements["items"]} <= set(granted)


def test_a_statement_of_a_sub_account_not_granted_answers_like_a_missing_one(cw):
    """The partner's own statement, of a sub-account this key was not granted: missing."""
    narrow = Api(client_key(cw.world.own.partner.pk, cw.refs.sub_account_id, name="Narrow"))
    statement_id = cw.refs.statement_id
    assert narrow.get("/statements").json() == {"items": [], "count": 0}
    for suffix in ("", "/csv", "/pdf"):
        foreign = narrow.get(f"/statements/{statement_id}{suffix}")
        missing = narrow.get(f"/statements/{MISSING_ID}{suffix}")
        assert foreign.status_code == 404
        _same_answer(foreign, missing, statement_id)


def test_a_client_with_an_empty_grant_sees_nothing(world):
    key = api_key_create(
        principal=SYSTEM.acting_for(world.own.partner.pk),
        name="Granted then emptied",
        role="client",
        sub_account_ids=[world.own_refs.sub_account_id],
    )
    key.api_key.sub_accounts.clear()
    client = Api(key.raw)
    assert client.get("/sub-accounts").json()["count"] == 0
    assert client.get("/lines").json()["count"] == 0
    assert client.get("/analytics/sub-accounts").json()["count"] == 0
    assert client.get(f"/sub-accounts/{world.own_refs.sub_account_id}").status_code == 404


# --- No wholesale figure -----------------------------------------------------------------

PROVIDER_PRICE = "97.31"  # no other figure of the world below can read like it


def _provider_figures(*invoices: Invoice) -> set[str]:
    """Every amount the provider charges in ``invoices``: the price, each item, section and
    total (what two lines cost at the price and the day amounts included)."""
    amounts = {Decimal(PROVIDER_PRICE)}
    for invoice in invoices:
        amounts.add(invoice.total)
        for section in invoice.sections.all():
            amounts |= {section.total, section.recurring, section.prorations, section.discounts}
            amounts |= {item.amount for item in section.items.all()}
    cents = {abs(a).quantize(Decimal("0.01")) for a in amounts}
    return {f"{a:f}" for a in cents if a} | {f"{a:,f}" for a in cents if a >= 1000}


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.mark.django_db
def test_nothing_a_client_reads_carries_a_wholesale_figure():
    """Every client-readable endpoint, every page a client opens (found in the URLconf by
    CLIENT_PAGES, its Notifications among them) and the statement's PDF and CSV, read by a
    client of A in the worked example of domain §8.1 at a provider price no other figure
    can produce."""
    tenant = make_tenant("Provider-Side Name Co", line_price=Decimal(PROVIDER_PRICE))
    partner = tenant.partner
    Partner.objects.filter(pk=partner.pk).update(display_name="Shiny Reseller")
    h = statement_history(partner)
    with clock.frozen_at(dt.datetime(2026, 7, 10, tzinfo=dt.UTC)):
        discount_grant(
            principal=SYSTEM.acting_for(partner.pk), kind="percent", value="7", name="Promo"
        )
    # The client exists when August is issued: its inbox holds A's statement, on a page
    # it opens (Notifications, in CLIENT_PAGES) that is checked below like the others.
    user = user_create(
        principal=SYSTEM.acting_for(partner.pk),
        email="client@figures.example",
        role="client",
        password="demo-pass-123",
        sub_account_ids=[h.a.pk],
    )
    august = issue_invoice(partner, 2026, 8)
    forbidden = _provider_figures(h.june, h.july, august)
    statement = h.statement(h.a, h.july)
    line = Line.objects.filter(sub_account=h.a).first()
    refs = Refs(
        slug=partner.slug,
        sub_account_id=h.a.pk,
        line_id=line.pk,
        other_line_id=line.pk,
        order_id=MISSING_ID,
        invoice_id=h.july.pk,
        other_sub_account_id=h.a.pk,
        statement_id=statement.pk,
    )

    def clean(what: str, text: str) -> None:
        for figure in forbidden:
            assert figure not in text, (what, figure)
        for word in ("Provider-Side Name Co", "Promo", "Client B – Support"):
            assert word not in text, (what, word)

    api = Api(client_key(partner.pk, h.a.pk))
    for endpoint in CLIENT_READ_ENDPOINTS:
        response = _call(api, endpoint, refs)
        assert response.status_code == 200, str(endpoint)
        body = response.content
        text = _pdf_text(body) if endpoint.path.endswith("/pdf") else body.decode()
        clean(str(endpoint), text)
        if endpoint.path.endswith("/pdf"):
            assert "Shiny Reseller" in text and "80.00" in text  # the resale price is there

    browser = _login(user)
    values = {"sub_account_id": str(h.a.pk), "statement_id": str(statement.pk)}
    pages = [r for r in page_routes() if r.name in CLIENT_PAGES]
    assert {r.name for r in pages} == CLIENT_PAGES
    for route in pages:
        url = build_url(route, lambda _route, param: values[param])
        response = browser.get(url, follow=True)
        assert response.status_code == 200, url
        body = response.content
        text = _pdf_text(body) if route.name == "billing:statement_pdf" else body.decode()
        clean(url, text)
        if "<html" in text:  # a whole page, not a fragment or a file
            assert "Shiny Reseller" in text, url
    inbox = browser.get(reverse("notifications:notification_list")).content.decode()
    assert "Your statement for August 2026 is issued: Client A – Sales" in inbox
    statements = browser.get(reverse("billing:statement_list") + "?period=all").content.decode()
    assert "80.00" in statements and "160.00" in statements  # its statements are listed

    # The check can see the figures: the partner's admin reads them on its invoices.
    admin = Api(tenant.keys["admin"])
    invoice = admin.get(f"/invoices/{h.july.pk}").content.decode()
    assert PROVIDER_PRICE in invoice and f"{h.july.total:f}" in invoice


# --- Granting: services and the command --------------------------------------------------


@pytest.mark.django_db
def test_a_client_key_and_a_client_user_carry_their_grant():
    tenant = make_tenant("Granting Co")
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    admin = tenant.principal("admin")
    issued = api_key_create(
        principal=admin, name="Portal", role="client", sub_account_ids=[b.pk, a.pk]
    )
    key = api_key_authenticate(issued.raw)
    principal = Principal.for_api_key(key)
    assert principal.is_client and principal.sub_account_ids == {a.pk, b.pk}
    event = AuditEvent.objects.filter(action="api_key.create").latest("pk")
    assert event.data["after"]["sub_account_ids"] == sorted([a.pk, b.pk])

    user = user_invite(
        principal=admin,
        email="client@example.com",
        role="client",
        base_url="http://testserver",
        sub_account_ids=f"{a.pk}",
    )
    assert Principal.for_user(user).sub_account_ids == {a.pk}
    # The grant changes with the role; leaving the client role clears it.
    user_role_change(principal=admin, user_id=user.pk, role="client", sub_account_ids=[b.pk])
    user.refresh_from_db()
    assert Principal.for_user(user).sub_account_ids == {b.pk}
    user_role_change(principal=admin, user_id=user.pk, role="viewer")
    user.refresh_from_db()
    assert Principal.for_user(user).sub_account_ids is None
    assert not Membership.objects.get(user=user).sub_accounts.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "grant", "message"),
    [
        ("client", [], "at least one sub-account"),
        ("client", None, "at least one sub-account"),
        ("client", "theirs", "not one of"),
        ("client", "pool", "not one of"),
        ("client", "purged", "not one of"),
        ("client", [MISSING_ID], "not one of"),
        ("client", ["x"], "whole numbers"),
        ("viewer", "own", "Only a client"),
    ],
)
def test_a_bad_grant_is_refused_and_changes_nothing(role, grant, message):
    tenant = make_tenant("Own Co")
    other = make_tenant("Other Co")
    own = make_sub_account(tenant.partner, "Own")
    purged = make_sub_account(tenant.partner, "Gone")
    SubAccount.objects.filter(pk=purged.pk).update(status=SubAccountStatus.DELETED)
    named = {
        "theirs": [make_sub_account(other.partner, "Theirs").pk],
        "pool": [available_pool(tenant.partner.pk).pk],
        "purged": [purged.pk],
        "own": [own.pk],
    }
    ids = named.get(grant, grant) if isinstance(grant, str) else grant
    admin = tenant.principal("admin")
    before = db_snapshot()
    with pytest.raises(Invalid, match=message):
        api_key_create(principal=admin, name="Bad", role=role, sub_account_ids=ids)
    with pytest.raises(Invalid, match=message):
        user_create(principal=admin, email="bad@example.com", role=role, sub_account_ids=ids)
    assert db_snapshot() == before


@pytest.mark.django_db
def test_a_staff_key_takes_no_grant_and_a_client_grants_nothing():
    tenant = make_tenant("Staffed Co")
    sa = make_sub_account(tenant.partner, "A")
    before = db_snapshot()
    with pytest.raises(Invalid, match="no sub-accounts"):
        api_key_create(principal=SYSTEM, name="Staff", staff=True, sub_account_ids=[sa.pk])
    client = Principal.for_api_key(api_key_authenticate(client_key(tenant.partner.pk, sa.pk)))
    before = db_snapshot()
    with pytest.raises(Forbidden):
        api_key_create(principal=client, name="Mine", role="client", sub_account_ids=[sa.pk])
    assert db_snapshot() == before


@pytest.mark.django_db
def test_createapikey_issues_a_client_key():
    tenant = make_tenant("Command Co")
    a = make_sub_account(tenant.partner, "A")
    b = make_sub_account(tenant.partner, "B")
    out = StringIO()
    call_command(
        "createapikey",
        "--partner",
        tenant.partner.slug,
        "--role",
        "client",
        "--sub-accounts",
        f"{a.pk},{b.pk}",
        "--name",
        "Client portal",
        stdout=out,
    )
    raw = out.getvalue().strip().splitlines()[-1]
    listed = Api(raw).get("/sub-accounts").json()
    assert sorted(s["id"] for s in listed["items"]) == sorted([a.pk, b.pk])
    before = ApiKey.objects.count()
    with pytest.raises(CommandError, match="at least one sub-account"):
        call_command(
            "createapikey", "--partner", tenant.partner.slug, "--role", "client", "--name", "N"
        )
    with pytest.raises(CommandError, match="no sub-accounts"):
        call_command("createapikey", "--staff", "--sub-accounts", f"{a.pk}", "--name", "N")
    assert ApiKey.objects.count() == before


# --- History -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_merged_or_deleted_sub_account_stays_readable_until_purged():
    tenant = make_tenant("History Co", self_service_requests=True)
    partner = tenant.partner
    source = make_sub_account(partner, "Source")
    target = make_sub_account(partner, "Target")
    gone = make_sub_account(partner, "Gone")
    line = make_lines(partner, 1)[0]
    line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=source.pk)
    client = Api(client_key(partner.pk, source.pk, gone.pk))
    staff = SYSTEM.acting_for(partner.pk)

    merge = merge_request_create(principal=staff, source_ids=[source.pk], target_id=target.pk)
    merge_request_approve(principal=staff, request_id=merge.pk)
    merge_request_run(principal=SYSTEM, request_id=merge.pk)
    assert client.get(f"/sub-accounts/{source.pk}").json()["status"] == "merged"
    # Access never follows the merge: the target and the line now in it stay missing.
    assert client.get(f"/sub-accounts/{target.pk}").status_code == 404
    assert client.get(f"/lines/{line.pk}").status_code == 404
    assert client.get(f"/sub-accounts/{target.pk}/analytics").status_code == 404

    deletion = deletion_request_create(principal=staff, sub_account_id=gone.pk)
    deletion_request_approve(principal=staff, request_id=deletion.pk)
    assert client.get(f"/sub-accounts/{gone.pk}").json()["status"] == "pending_deletion"
    with clock.frozen_at(clock.now() + dt.timedelta(days=400)):
        deletion_request_purge(principal=staff, request_id=deletion.pk)
    assert client.get(f"/sub-accounts/{gone.pk}").status_code == 404


# --- Pages -------------------------------------------------------------------------------


def _login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_clients_pages_are_its_few_headed_with_the_resellers_name():
    tenant = make_tenant("Provider-Side Name Co", line_price=Decimal(PROVIDER_PRICE))
    partner = tenant.partner
    Partner.objects.filter(pk=partner.pk).update(display_name="Shiny Reseller")
    mine = make_sub_account(partner, "Mine")
    theirs = make_sub_account(partner, "Not Mine")
    lines = make_lines(partner, 2)
    line_move(principal=SYSTEM, line_id=lines[0].pk, sub_account_id=mine.pk)
    line_move(principal=SYSTEM, line_id=lines[1].pk, sub_account_id=theirs.pk)
    user = user_create(
        principal=SYSTEM.acting_for(partner.pk),
        email="client@pages.example",
        role="client",
        password="demo-pass-123",
        sub_account_ids=[mine.pk],
    )
    client = _login(user)
    readable = [
        reverse("partners:sub_account_list"),
        reverse("partners:sub_account_detail", args=[mine.pk]),
        reverse("partners:sub_account_analytics", args=[mine.pk]),
        reverse("lines:line_list"),
        reverse("analytics:overview"),
        reverse("analytics:sub_account", args=[mine.pk]),
    ]
    for url in readable:
        response = client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        assert "Shiny Reseller" in page, url
        assert "Provider-Side Name Co" not in page, url
        assert PROVIDER_PRICE not in page, url
        assert "Not Mine" not in page, url
        assert lines[1].number not in page, url
    nav = client.get(reverse("partners:sub_account_list")).context["nav_items"]
    assert [label for label, _, _ in nav] == [
        "Sub-accounts",
        "Lines",
        "Analytics",
        "Statements",
        "Your account",
    ]

    for url in [
        reverse("partners:sub_account_detail", args=[theirs.pk]),
        reverse("analytics:sub_account", args=[theirs.pk]),
    ]:
        assert client.get(url).status_code == 404, url
    before = db_snapshot()
    for url in [
        reverse("settings:users"),
        reverse("settings:api_keys"),
        reverse("settings:partner"),
        reverse("audit:audit_log"),
        reverse("billing:invoice_list"),
        reverse("billing:summary"),
        reverse("workflows:request_list"),
        reverse("lines:line_orders"),
        reverse("partners:sub_account_create"),
        reverse("partners:sub_account_edit", args=[mine.pk]),
        reverse("partners:sub_account_billing", args=[mine.pk]),
        reverse("partners:sub_account_audit", args=[mine.pk]),
    ]:
        assert client.get(url).status_code == 403, url
    assert client.post(reverse("partners:sub_account_edit", args=[mine.pk]), {}).status_code == 403
    assert db_snapshot() == before


@pytest.mark.django_db
def test_settings_invite_a_client_and_issue_a_client_key_with_their_sub_accounts():
    partner = make_tenant("Inviting Co").partner
    a = make_sub_account(partner, "A")
    make_sub_account(partner, "B")
    admin = user_create(
        principal=SYSTEM.acting_for(partner.pk),
        email="admin@inviting.example",
        role="admin",
        password="demo-pass-123",
    )
    client = _login(admin)
    dialog = client.get("/settings/users/invite/").content.decode()
    assert 'name="sub_account_ids"' in dialog and ">A<" in dialog
    assert ">Available<" not in dialog
    # No sub-account picked: a clear error in the dialog, nothing changes.
    before = db_snapshot()
    refused = client.post(
        "/settings/users/invite/", {"email": "c@inviting.example", "role": "client"}
    )
    assert refused.status_code == 422
    assert "at least one sub-account" in refused.content.decode()
    assert db_snapshot() == before
    done = client.post(
        "/settings/users/invite/",
        {"email": "c@inviting.example", "role": "client", "sub_account_ids": [str(a.pk)]},
    )
    assert done.status_code in {200, 204, 302}, done.content
    invited = Membership.objects.get(user__email="c@inviting.example")
    assert list(invited.sub_accounts.values_list("pk", flat=True)) == [a.pk]

    issued = client.post(
        "/settings/api-keys/new/",
        {"name": "Client key", "role": "client", "sub_account_ids": [str(a.pk)]},
    )
    assert issued.status_code == 201, issued.content
    key = ApiKey.objects.get(name="Client key")
    assert list(key.sub_accounts.values_list("pk", flat=True)) == [a.pk]


@pytest.mark.django_db
def test_settings_list_each_clients_grant_and_change_and_revoke_it():
    partner = make_tenant("Granting Pages Co").partner
    subs = [make_sub_account(partner, f"Client {i:02d} – Sales") for i in range(8)]
    staff = SYSTEM.acting_for(partner.pk)
    admin = user_create(
        principal=staff, email="admin@grants.example", role="admin", password="demo-pass-123"
    )
    client_user = user_create(
        principal=staff,
        email="client@grants.example",
        role="client",
        password="demo-pass-123",
        sub_account_ids=[s.pk for s in subs[:7]],
    )
    api_key_create(principal=staff, name="Portal key", role="client", sub_account_ids=[subs[7].pk])
    pages = _login(admin)
    users = pages.get("/settings/users/").content.decode()
    assert "Sees Client 00 – Sales, Client 01 – Sales, Client 02 – Sales" in users
    assert "and 2 more" in users
    keys = pages.get("/settings/api-keys/").content.decode()
    assert "Sees Client 07 – Sales" in keys

    # Changing the grant: the client's scope follows at its next request.
    browser = _login(client_user)
    assert browser.get(f"/sub-accounts/{subs[7].pk}/").status_code == 404
    role_url = f"/settings/users/{client_user.pk}/role/"
    dialog = pages.get(role_url).content.decode()
    assert f'value="{subs[0].pk}" selected' in dialog
    changed = pages.post(role_url, {"role": "client", "sub_account_ids": [str(subs[7].pk)]})
    assert changed.status_code in {200, 204, 302}, changed.content
    grant = Membership.objects.get(user=client_user).sub_accounts.values_list("pk", flat=True)
    assert list(grant) == [subs[7].pk]
    assert browser.get(f"/sub-accounts/{subs[7].pk}/").status_code == 200
    assert browser.get(f"/sub-accounts/{subs[0].pk}/").status_code == 404

    # An empty grant is refused with its reason; nothing changes.
    before = db_snapshot()
    refused = pages.post(role_url, {"role": "client"})
    assert refused.status_code == 422
    assert "at least one sub-account" in refused.content.decode()
    assert db_snapshot() == before

    # Revoking: another role clears the grant, and the pages a client had are no longer
    # narrowed to it (a viewer sees the partner's sub-accounts).
    # (what the picker still shows is left behind with the Client role)
    pages.post(role_url, {"role": "viewer", "sub_account_ids": [str(subs[7].pk)]})
    assert not Membership.objects.get(user=client_user).sub_accounts.exists()
    assert browser.get(f"/sub-accounts/{subs[0].pk}/").status_code == 200
    assert "Sees" not in pages.get("/settings/users/").content.decode().split("grants.example")[2]


@pytest.mark.django_db
def test_the_grant_picker_takes_names_with_suggestions_past_a_select(monkeypatch):
    """Past SELECT_LIMIT (10,000 sub-accounts in the bench's reseller) the picker is the
    names one a line and a search field fed by the Sub-account pickers' suggestions."""
    monkeypatch.setattr("portal.accounts.views.SELECT_LIMIT", 3)
    partner = make_tenant("Huge Reseller").partner
    subs = [make_sub_account(partner, f"Acme {i} – Sales") for i in range(5)]
    admin = user_create(
        principal=SYSTEM.acting_for(partner.pk),
        email="admin@huge.example",
        role="admin",
        password="demo-pass-123",
    )
    pages = _login(admin)
    dialog = pages.get("/settings/users/invite/").content.decode()
    assert 'name="sub_account_names"' in dialog and "<select multiple" not in dialog
    assert (
        'list="sub-account-options"' in dialog
        and 'data-adds-to="dialog_sub_account_names"' in dialog
    )
    suggested = pages.get("/sub-accounts/options/?list=sub-account-options&sub_account=acme 3")
    assert "Acme 3 – Sales" in suggested.content.decode()

    before = db_snapshot()
    refused = pages.post(
        "/settings/users/invite/",
        {"email": "c@huge.example", "role": "client", "sub_account_names": "Acme 1 – Sales\nNope"},
    )
    assert refused.status_code == 422
    assert "No sub-account is named “Nope”" in refused.content.decode()
    assert db_snapshot() == before
    done = pages.post(
        "/settings/users/invite/",
        {
            "email": "c@huge.example",
            "role": "client",
            "sub_account_names": "acme 1 – sales\n\nAcme 4 – Sales",
            "sub_account": "Acme 2 – Sales",  # left in the search field, without JavaScript
        },
    )
    assert done.status_code in {200, 204, 302}, done.content
    invited = Membership.objects.get(user__email="c@huge.example")
    assert sorted(invited.sub_accounts.values_list("pk", flat=True)) == sorted(
        [subs[1].pk, subs[4].pk, subs[2].pk]
    )
    role = pages.get(f"/settings/users/{invited.user_id}/role/").content.decode()
    assert "Acme 1 – Sales\nAcme 2 – Sales\nAcme 4 – Sales" in role
    issued = pages.post(
        "/settings/api-keys/new/",
        {"name": "Huge key", "role": "client", "sub_account_names": "Acme 0 – Sales"},
    )
    assert issued.status_code == 201
    assert list(ApiKey.objects.get(name="Huge key").sub_accounts.values_list("pk", flat=True)) == [
        subs[0].pk
    ]


# --- Sessions and throttling, as for partner users ---------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "client"])
def test_a_client_login_is_throttled_and_its_session_ends_like_a_partner_users(role):
    partner = make_tenant("Throttled Co").partner
    sub_account = make_sub_account(partner, "Mine")
    email = f"{role}@throttled.example"
    user_create(
        principal=SYSTEM.acting_for(partner.pk),
        email=email,
        role=role,
        password="right-pass-2026",
        sub_account_ids=[sub_account.pk] if role == "client" else None,
    )
    t0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    browser = Client()

    def login(password: str, minutes: float) -> int:
        with clock.frozen_at(t0 + dt.timedelta(minutes=minutes)):
            form = {"username": email, "password": password}
            return browser.post("/login/", form).status_code

    assert [login(f"guess-{i}", 0) for i in range(7)] == [200] * 5 + [429] * 2
    assert login("right-pass-2026", 1) == 429  # paused, even with the right password
    assert login("right-pass-2026", 15.5) == 302
    with clock.frozen_at(t0 + dt.timedelta(minutes=30)):
        assert browser.get("/sub-accounts/").status_code == 200
    with clock.frozen_at(t0 + dt.timedelta(minutes=61)):  # 31 idle minutes
        ended = browser.get("/sub-accounts/")
    assert ended.status_code == 302 and ended["Location"].startswith("/login/")


@pytest.mark.django_db
def test_a_client_key_is_rate_limited_like_any_key(limits):
    partner = make_tenant("Limited Co").partner
    sub_account = make_sub_account(partner, "Mine")
    api = Api(client_key(partner.pk, sub_account.pk))
    limits(api="3/60")
    with clock.frozen_at(dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)):
        answers = [api.get("/sub-accounts").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]


@pytest.mark.django_db
def test_a_clients_analytics_totals_and_days_are_its_own_sub_accounts_only():
    """The Analytics page's totals and daily charts are the partner's days for everyone
    else; for a client they are its own sub-accounts', never the partner's whole."""
    partner = make_tenant("Traffic Co").partner
    mine = make_sub_account(partner, "Mine")
    theirs = make_sub_account(partner, "Theirs")
    now = clock.now()
    with clock.frozen_at(now - dt.timedelta(days=1)):
        my_line, their_line = make_lines(partner, 2)
        line_move(principal=SYSTEM, line_id=my_line.pk, sub_account_id=mine.pk)
        line_move(principal=SYSTEM, line_id=their_line.pk, sub_account_id=theirs.pk)
    events = [
        {
            "id": f"e{i}",
            "line": line.number,
            "direction": "outbound",
            "contact": f"+1212555{i:04d}",
            "occurred_at": (now - dt.timedelta(hours=2, minutes=i)).isoformat(),
        }
        for i, line in enumerate([my_line, their_line, their_line, their_line])
    ]
    assert message_events_ingest(principal=SYSTEM, events=events).accepted == 4
    staff = SYSTEM.acting_for(partner.pk)
    client = user_create(
        principal=staff,
        email="client@traffic.example",
        role="client",
        password="demo-pass-123",
        sub_account_ids=[mine.pk],
    )
    viewer = user_create(
        principal=staff, email="viewer@traffic.example", role="viewer", password="demo-pass-123"
    )
    period = {"start": (now - dt.timedelta(days=2)).date(), "end": now.date()}
    seen = _login(client).get("/analytics/", period).context
    everyone = _login(viewer).get("/analytics/", period).context
    assert dict((label, value) for label, value, _ in everyone["totals"])["Messages sent"] == "4"
    assert dict((label, value) for label, value, _ in seen["totals"])["Messages sent"] == "1"
    assert [r["name"] for r in seen["rows"]] == ["Mine"]
