"""The Sub-accounts list's figures (issue 18, point 2): This month is Billing's summary row,
volume limit usage, response rate and flags are the Analytics comparison's, whatever the
sort; sorting by a figure orders every sub-account, not a page; the Status filter; and
another partner's sub-accounts never appear."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client

from portal.accounts.models import User
from portal.analytics.selectors import sub_account_analytics_list
from portal.analytics.views import FLAG_LABELS, percent_text
from portal.billing.precompute import proration_accruals_precompute
from portal.billing.summary import billing_summary
from portal.core import clock
from portal.core.principal import Principal
from portal.lines.services import line_move
from portal.partners.models import SubAccountStatus
from portal.workflows.services import deletions
from tests.analytics.support import assign_at, event, ingest, lines_at
from tests.factories import SYSTEM, make_lines, make_sub_account, make_user

STAFF = Principal.system("staff-test")


def traffic(partner):
    """Alpha busy and answered, Beta busy and unanswered (underperforming), over-pressured
    Alpha; lines held since before the cycle, and Gamma's moved in now (prorations)."""
    base = clock.now().astimezone(dt.UTC) - dt.timedelta(hours=1)
    start = base - dt.timedelta(days=40)
    alpha = make_sub_account(partner, "Alpha – Sales")
    beta = make_sub_account(partner, "Beta – Support")
    gamma = make_sub_account(partner, "Gamma – Billing")
    line_a, line_b, line_c = lines_at(partner, 3, start)
    assign_at(line_a, alpha, start, daily_limit=2)
    assign_at(line_b, beta, start, daily_limit=10)
    assign_at(line_c, beta, start, daily_limit=10)
    events = []
    for day in range(8):
        at = base - dt.timedelta(days=day)
        for n in range(3):
            contact = f"+1415555{day:02d}{n:02d}"
            events.append(event(f"a{day}-{n}", line_a, "outbound", contact, at))
            events.append(
                event(f"r{day}-{n}", line_a, "inbound", contact, at + dt.timedelta(minutes=5))
            )
        events.append(event(f"b{day}", line_b, "outbound", f"+1415556{day:04d}", at))
    assert ingest(*events).rejected == []
    for line in make_lines(partner, 3):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=gamma.pk)
    return alpha, beta, gamma


def admin_principal() -> Principal:
    user = User.objects.select_related("membership").get(email="list-admin@example.com")
    return Principal.for_user(user)


def listing(client: Client, query: str = ""):
    response = client.get("/sub-accounts/" + query)
    assert response.status_code == 200, response.content[:300]
    return response.context["listing"]


@pytest.fixture
def admin_client(tenant) -> Client:
    client = Client()
    client.force_login(make_user(tenant.partner, "list-admin@example.com", "admin"))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("sort", ["", "-this_month", "response_rate"])
def test_figures_are_billings_and_analytics_own(tenant, admin_client, sort):
    alpha, beta, gamma = traffic(tenant.partner)
    principal = admin_principal()
    summary = {r.sub_account_id: r.total for r in billing_summary(principal=principal).rows}
    compared = {
        r["sub_account_id"]: r for r in sub_account_analytics_list(principal=principal).rows
    }
    page = listing(admin_client, f"?sort={sort}" if sort else "")
    rows = {r.sub_account.pk: r for r in page.rows}
    assert set(rows) == {alpha.pk, beta.pk, gamma.pk}
    assert page.pool is not None
    for row in [*rows.values(), page.pool]:
        pk = row.sub_account.pk
        assert row.cost == summary.get(pk, Decimal(0))
        figures = compared[pk]
        assert row.usage == percent_text(figures["volume_limit_usage"])
        assert row.rate == percent_text(figures["response_rate"])
        assert row.flags == [(f, FLAG_LABELS[f]) for f in figures["flags"]]
    # The data says something: costs differ, a flag of each kind shows.
    assert len({rows[pk].cost for pk in rows}) == 3
    assert rows[alpha.pk].flags == [("over_pressured", "Over-pressured")]
    assert rows[beta.pk].flags == [("underperforming", "Underperforming")]


@pytest.mark.django_db
def test_a_pages_summary_equals_the_whole_summarys_rows(tenant, admin_client):
    """``billing_summary(sub_account_ids=…)`` reads a page's rows: the same as the whole
    summary's, with the worker's precomputed sums and without."""
    _alpha, beta, gamma = traffic(tenant.partner)
    principal = admin_principal()
    for precomputed in (False, True):
        if precomputed:
            proration_accruals_precompute(principal=SYSTEM, now=clock.now())
        whole = {r.sub_account_id: r for r in billing_summary(principal=principal).rows}
        part = billing_summary(principal=principal, sub_account_ids=[gamma.pk, beta.pk]).rows
        assert {r.sub_account_id for r in part} == {gamma.pk, beta.pk}
        for r in part:
            assert r == whole[r.sub_account_id]
        assert whole[gamma.pk].accruing_prorations > 0


@pytest.mark.django_db
def test_sorting_by_a_figure_orders_every_sub_account_not_a_page(tenant, admin_client):
    partner = tenant.partner
    for n in range(55):  # more than a page, all before "Zulu" by name
        make_sub_account(partner, f"Client {n:02d} – Idle")
    zulu = make_sub_account(partner, "Zulu – Costly")
    for line in make_lines(partner, 2):
        line_move(principal=SYSTEM, line_id=line.pk, sub_account_id=zulu.pk)
    assert [r.sub_account.pk for r in listing(admin_client).rows][-1] != zulu.pk
    first = listing(admin_client, "?sort=-this_month")
    assert first.rows[0].sub_account.pk == zulu.pk
    assert first.rows[0].cost > 0
    assert first.page.paginator.count == 56
    last = listing(admin_client, "?sort=this_month&page=2")
    assert last.rows[-1].sub_account.pk == zulu.pk
    # Ties keep the name order.
    names = [r.sub_account.name for r in first.rows[1:]]
    assert names == sorted(names, key=str.lower)


@pytest.mark.django_db
def test_status_filter_and_restore_link(tenant, admin_client):
    partner = tenant.partner
    kept = make_sub_account(partner, "Kept – Sales")
    gone = make_sub_account(partner, "Gone – Old")
    request = deletions.deletion_request_create(
        principal=SYSTEM.acting_for(partner.pk), sub_account_id=gone.pk
    )
    deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)

    def names(query: str) -> set[str]:
        return {r.sub_account.name for r in listing(admin_client, query).rows}

    assert names("") == {"Kept – Sales"}  # as before: pending deletions hidden by default
    assert names("?status=active") == {"Kept – Sales"}
    assert names("?status=all") == {"Kept – Sales", "Gone – Old"}
    pending = listing(admin_client, "?status=pending_deletion")
    assert [r.sub_account.pk for r in pending.rows] == [gone.pk]
    assert pending.pool is None
    assert pending.rows[0].restore_id == request.pk
    html = admin_client.get("/sub-accounts/?status=pending_deletion").content.decode()
    assert f"/requests/deletion/{request.pk}/restore/" in html
    # Restoring from the list returns to it.
    response = admin_client.post(
        f"/requests/deletion/{request.pk}/restore/",
        {"next": "/sub-accounts/?status=pending_deletion"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/sub-accounts/?status=pending_deletion"
    gone.refresh_from_db()
    assert gone.status == SubAccountStatus.ACTIVE
    assert names("") == {"Kept – Sales", "Gone – Old"}
    assert kept.pk


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_no_restore_for_roles_that_may_not(tenant, role):
    partner = tenant.partner
    gone = make_sub_account(partner, "Gone – Old")
    request = deletions.deletion_request_create(
        principal=SYSTEM.acting_for(partner.pk), sub_account_id=gone.pk
    )
    deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)
    client = Client()
    client.force_login(make_user(partner, f"{role}@example.com", role))
    page = listing(client, "?status=pending_deletion")
    assert [r.restore_id for r in page.rows] == [None]
    html = client.get("/sub-accounts/?status=pending_deletion").content.decode()
    assert "restore/" not in html
    assert "Purge on" in html
    # Cost is for roles that see the billing summary: not viewers, not even by sort.
    assert page.show_cost is (role == "manager")
    assert client.get("/sub-accounts/?sort=-this_month").status_code == 200


@pytest.mark.django_db
def test_bad_sort_and_status_fall_back_to_defaults(tenant, admin_client):
    make_sub_account(tenant.partner, "Alpha – Sales")
    for query in ("?sort=bogus", "?status=deleted", "?status=%00&sort=-flags&page=x"):
        assert [r.sub_account.name for r in listing(admin_client, query).rows] == ["Alpha – Sales"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["", "?sort=-this_month", "?sort=-volume_limit_usage", "?status=all&sort=flags"]
)
def test_another_partners_sub_accounts_never_appear(tenant, other_tenant, admin_client, query):
    traffic(other_tenant.partner)
    theirs = make_sub_account(other_tenant.partner, "Theirs – Pending")
    request = deletions.deletion_request_create(
        principal=SYSTEM.acting_for(other_tenant.partner.pk), sub_account_id=theirs.pk
    )
    deletions.deletion_request_approve(principal=STAFF, request_id=request.pk)
    mine = make_sub_account(tenant.partner, "Mine – Sales")
    page = listing(admin_client, query)
    assert [r.sub_account.pk for r in page.rows] == [mine.pk]
    assert page.pool is not None and page.pool.sub_account.partner_id == tenant.partner.pk
    html = admin_client.get("/sub-accounts/" + query).content.decode()
    for name in ("Alpha", "Beta", "Gamma", "Theirs"):
        assert name not in html
    # Their deletion cannot be restored from here either.
    response = admin_client.post(f"/requests/deletion/{request.pk}/restore/")
    assert response.status_code == 404
