"""Forms (issue 18, point 8): inputs allow what the service allows; every refused field is
shown at once, by its label, never by an internal name; the phone is taken as the hint
writes it and stored as E.164, alike through the API and the pages; the line-request form
makes one order per submission, however often it is posted."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from portal.audit.models import AuditEvent
from portal.core.errors import Invalid
from portal.core.phone import normalize_e164
from portal.lines.models import LineOrder
from portal.partners import services as partner_services
from portal.partners.models import SubAccount
from tests.browser.conftest import PASSWORD
from tests.factories import db_snapshot, make_sub_account, make_user

pytestmark = pytest.mark.django_db

LIMITS = {
    "name": partner_services.NAME_MAX,
    "contact_name": partner_services.CONTACT_NAME_MAX,
    "contact_email": partner_services.EMAIL_MAX,
    "contact_phone": partner_services.PHONE_MAX,
    "internal_reference": partner_services.REFERENCE_MAX,
    "notes": partner_services.NOTES_MAX,
}
BAD = {
    "name": "",
    "contact_name": "Ann",
    "contact_email": "not-an-email",
    "contact_phone": "(415) 555-0100",
    "internal_reference": "R" * 121,
}


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in {"input", "textarea"} and found.get("name") in LIMITS:
            self.fields[found["name"]] = found  # type: ignore[index]


def inputs(html: str) -> dict[str, dict[str, str | None]]:
    parser = _Inputs()
    parser.feed(html)
    return parser.fields


@pytest.fixture
def admin(tenant) -> Client:
    make_user(tenant.partner, "ada@acme.example", "admin", password=PASSWORD)
    client = Client()
    assert client.login(email="ada@acme.example", password=PASSWORD)
    return client


def test_inputs_allow_what_the_service_allows(admin, tenant):
    sa = make_sub_account(tenant.partner, "Client – Sales")
    for url in ("/sub-accounts/new/", f"/sub-accounts/{sa.pk}/edit/"):
        fields = inputs(admin.get(url).content.decode())
        assert {name: int(f["maxlength"] or 0) for name, f in fields.items()} == LIMITS, url
    # And the service takes that many: a name of exactly the limit is a name.
    longest = make_sub_account(tenant.partner, "N" * partner_services.NAME_MAX)
    assert len(longest.name) == partner_services.NAME_MAX


def test_the_create_form_shows_every_error_at_once_by_label(admin, tenant):
    before = db_snapshot()
    response = admin.post("/sub-accounts/new/", BAD)
    assert response.status_code == 422
    html = response.content.decode()
    assert db_snapshot() == before
    # The summary names each refused field by its label and links to it.
    start = html.index("error-summary")
    summary = html[start : html.index("</ul>", start)]
    assert "There are 4 problems to fix" in summary
    for field, label in [
        ("name", "Sub-account name"),
        ("contact_email", "Contact email"),
        ("contact_phone", "Contact phone"),
        ("internal_reference", "Internal reference"),
    ]:
        assert re.search(f'<a href="#id_{field}">{label}[ :<]', summary), (field, summary)
    # Each field carries its own error, wired to it for screen readers.
    fields = inputs(html)
    for field in ("contact_email", "contact_phone", "internal_reference"):
        assert fields[field]["aria-invalid"] == "true"
        assert f"id_{field}_error" in (fields[field]["aria-describedby"] or "")
        assert f'id="id_{field}_error"' in html
    assert fields["name"]["aria-invalid"] == "true"
    assert "Sub-account name is required" in html
    # Never an internal field name.
    assert not re.search(r"\b(contact_phone|contact_email|internal_reference):", html)
    assert "with its country code, e.g. +1 415 555 0100" in html
    assert fields["contact_name"]["value"] == "Ann"  # what was typed stays


def test_the_edit_form_shows_every_error_at_once(admin, tenant):
    sa = make_sub_account(tenant.partner, "Client – Sales")
    before = db_snapshot()
    response = admin.post(
        f"/sub-accounts/{sa.pk}/edit/", {**BAD, "name": "Client – Sales", "contact_name": ""}
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "There are 3 problems to fix" in html
    assert db_snapshot() == before


@pytest.mark.parametrize(
    "typed",
    [
        "+1 415 555 0100",
        "+1 (415) 555-0100",
        "+1.415.555.0100",
        "+1-415-555-0100",
        "+1\u00a0415\u00a0555\u00a00100",
        "001 415 555 0100",
        "14155550100",
    ],
)
def test_a_phone_as_people_write_it_is_stored_as_e164(typed):
    assert normalize_e164(typed, field="contact_phone", label="Contact phone") == "+14155550100"


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("(415) 555-0100", "with its country code"),
        ("+1 415", "not a valid phone number"),
        ("+1 415 555 0100 ext. 7", "has an extension"),
    ],
)
def test_a_phone_refusal_names_the_field_by_its_label(typed, says):
    with pytest.raises(Invalid) as refused:
        normalize_e164(typed, field="contact_phone", label="Contact phone")
    assert str(refused.value.detail).startswith("Contact phone: ")
    assert says in str(refused.value.detail)
    assert refused.value.field == "contact_phone"


def test_pages_and_api_store_the_phone_alike(admin, api, tenant):
    response = admin.post(
        "/sub-accounts/new/", {"name": "Page – Sales", "contact_phone": "+1 415 555 0100"}
    )
    assert response.status_code == 302
    assert SubAccount.objects.get(name="Page – Sales").contact_phone == "+14155550100"
    body = api.ok_post("/sub-accounts", {"name": "Api – Sales", "contact_phone": "+1 415 555 0100"})
    assert body["contact_phone"] == "+14155550100"


def test_the_api_reports_every_refused_field_in_one_422(api, tenant):
    before = db_snapshot()
    response = api.post(
        "/sub-accounts",
        {"name": "Api – Bad", "contact_email": "nope", "contact_phone": "(415) 555-0100"},
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "Contact email: 'nope' is not an email address." in detail
    assert "Contact phone: '(415) 555-0100' is not a phone number" in detail
    assert db_snapshot() == before


# --- One submission, one order -------------------------------------------------------


def _order_form(client: Client) -> dict[str, str]:
    html = client.get("/lines/orders/").content.decode()
    key = re.search(r'name="submission" value="([^"]+)"', html)
    assert key, "the form carries a one-time submission key"
    return {"quantity": "2", "area_code": "", "submission": key[1]}


def test_posting_the_line_request_form_twice_makes_one_order(admin, tenant):
    form = _order_form(admin)
    first = admin.post("/lines/orders/", form)
    assert first.status_code == 302
    again = admin.post("/lines/orders/", form, follow=True)  # a double click, a resubmit
    assert again.status_code == 200
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 1
    assert AuditEvent.objects.filter(action="line_order.create").count() == 1
    order = LineOrder.objects.get(partner=tenant.partner)
    assert f"This request was already sent (request #{order.pk})" in again.content.decode()


def test_each_drawn_form_is_its_own_submission(admin, tenant):
    admin.post("/lines/orders/", _order_form(admin))
    admin.post("/lines/orders/", _order_form(admin))
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 2


def test_a_refused_request_keeps_its_key_and_then_makes_one_order(admin, tenant):
    form = _order_form(admin)
    refused = admin.post("/lines/orders/", {**form, "quantity": "0"})
    assert refused.status_code == 422
    assert f'value="{form["submission"]}"' in refused.content.decode()
    admin.post("/lines/orders/", form)
    admin.post("/lines/orders/", form)
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 1


def test_a_forged_submission_key_is_refused(admin, tenant):
    before = db_snapshot()
    response = admin.post("/lines/orders/", {"quantity": "1", "submission": "<script>"})
    assert response.status_code == 422
    assert "reload the page" in response.content.decode()
    assert db_snapshot() == before


def test_another_partner_reusing_a_key_gets_its_own_order(admin, tenant, other_tenant):
    form = _order_form(admin)
    admin.post("/lines/orders/", form)
    make_user(other_tenant.partner, "rita@rival.example", "admin", password=PASSWORD)
    rival = Client()
    assert rival.login(email="rita@rival.example", password=PASSWORD)
    rival.post("/lines/orders/", form)
    assert LineOrder.objects.filter(partner=other_tenant.partner).count() == 1
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 1


def test_the_api_order_needs_no_key(api, tenant):
    api.ok_post("/line-orders", {"quantity": 1})
    api.ok_post("/line-orders", {"quantity": 1})
    assert LineOrder.objects.filter(partner=tenant.partner).count() == 2


def test_the_submit_button_is_for_one_submission(admin):
    html = admin.get("/lines/orders/").content.decode()
    assert "data-submit-once" in html
