"""Analytics → Alerts and the capacity advice in a real browser: a manager adds a rule in
its dialog, sees its alert fire, changes the rule (the alert resolves) and deletes it;
from the comparison's capacity column, the Move dialog opens with the advised lines
chosen and the destination set, and Confirm moves them."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from portal.alerts.evaluation import EVALUATOR, alerts_evaluate
from portal.alerts.models import Alert, AlertRule
from portal.core import clock
from portal.lines.models import Line
from tests.analytics.support import assign_at, event, ingest, lines_at
from tests.browser.conftest import PASSWORD
from tests.factories import make_sub_account, make_user

pytestmark = pytest.mark.django_db(transaction=True)


def busy_partner(partner):
    """Alpha: one line of limit 4 that started 4 conversations an hour ago (usage 100 %);
    Beta: a busy line and an idle one of limit 10; one line left in Available."""
    now = clock.now().astimezone(dt.UTC)
    long_ago = now - dt.timedelta(days=40)
    alpha, beta = make_sub_account(partner, "Alpha – Sales"), make_sub_account(partner, "Beta")
    a1, b1, b2, spare = lines_at(partner, 4, long_ago)
    assign_at(a1, alpha, long_ago, daily_limit=4)
    assign_at(b1, beta, long_ago, daily_limit=10)
    assign_at(b2, beta, long_ago, daily_limit=10)
    sent = now - dt.timedelta(hours=1)
    events = [event(f"a{i}", a1, "outbound", f"+1415555{i:04d}", sent) for i in range(4)]
    events.append(event("b", b1, "outbound", "+14155559999", sent))
    assert not ingest(*events).rejected
    return alpha, beta, b2, spare


def test_a_rule_fires_changes_and_goes(live_server, page, log_in, tenant):
    make_user(tenant.partner, "manager@acme.example", "manager", password=PASSWORD)
    busy_partner(tenant.partner)
    log_in(page, "manager@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analytics").click()
    page.get_by_role("navigation", name="Analytics").get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("heading", name="Alert rules")).to_be_visible()

    page.get_by_role("link", name="Add alert rule").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Metric").select_option(label="Volume limit usage")
    dialog.get_by_label("Condition").select_option(label="Above")
    dialog.get_by_label("Threshold").fill("1500")
    dialog.get_by_label("Window (days)").fill("1")
    dialog.get_by_role("button", name="Add alert rule").click()
    # Usage goes up to 1,000 %: refused in the dialog, under its field.
    expect(dialog.get_by_text("Enter a percentage from 0 to 1,000.", exact=True)).to_be_visible()
    dialog.get_by_label("Threshold").fill("80")
    dialog.get_by_label("Sub-account").select_option(label="Each sub-account")
    dialog.get_by_role("button", name="Add alert rule").click()
    expect(page.get_by_text("Alert rule added.")).to_be_visible()
    rules = page.get_by_role("table", name="Alert rules")
    expect(rules).to_contain_text("Volume limit usage above 80\u00a0% today")
    expect(rules).to_contain_text("Each sub-account")

    # The worker evaluates; Alpha (100 %) fires.
    alerts_evaluate(principal=EVALUATOR.acting_for(tenant.partner.pk))
    page.reload()
    firing = page.get_by_role("table", name="Alerts: Firing")
    expect(firing.locator("tbody tr")).to_have_count(1)
    expect(firing).to_contain_text("Alpha – Sales")
    expect(firing).to_contain_text("100.0\u00a0%")
    expect(page.get_by_role("link", name="Firing (1)")).to_have_attribute("aria-current", "page")

    # A new threshold is a new condition: the alert resolves, saying why.
    page.get_by_role("link", name=re.compile("^Edit rule")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Threshold")).to_have_value("80")
    dialog.get_by_label("Threshold").fill("120")
    dialog.get_by_role("button", name="Save alert rule").click()
    expect(page.get_by_text("Alert rule saved.")).to_be_visible()
    page.get_by_role("link", name="Resolved (1)").click()
    resolved = page.get_by_role("table", name="Alerts: Resolved")
    expect(resolved).to_contain_text("its rule was changed")

    page.get_by_role("link", name=re.compile("^Delete rule")).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No alert rules yet.")).to_be_visible()
    assert AlertRule.objects.get().deleted_at is not None
    assert Alert.objects.count() == 1


def test_the_capacity_column_opens_move_with_the_lines_chosen(live_server, page, log_in, tenant):
    make_user(tenant.partner, "admin@acme.example", "admin", password=PASSWORD)
    alpha, beta, idle, spare = busy_partner(tenant.partner)
    log_in(page, "admin@acme.example")
    page.goto(live_server.url + "/analytics/")
    table = page.get_by_role("table", name=re.compile("^Sub-accounts compared"))
    expect(table.get_by_role("columnheader", name="Capacity advice")).to_be_visible()
    beta_row = table.locator("tbody tr", has_text="Beta")
    expect(beta_row).to_contain_text("1 idle")

    # Beta can give its idle line back: the dialog names it and goes to Available.
    beta_row.get_by_role("link", name="Return 1 line from Beta").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Move 1 line")).to_be_visible()
    expect(dialog).to_contain_text("could return 1 line to Available")
    expect(dialog.get_by_label("Sub-account")).to_have_value(
        str(Line.objects.get(pk=spare.pk).sub_account_id)
    )
    with page.expect_navigation():
        dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Moved 1 line.")).to_be_visible()
    assert page.url.startswith(live_server.url + "/analytics/")
    idle.refresh_from_db()
    assert idle.sub_account_id == spare.sub_account_id  # back in Available

    # Alpha needs one more: Available's oldest line (the one Beta just gave back).
    table = page.get_by_role("table", name=re.compile("^Sub-accounts compared"))
    table.get_by_role("link", name="Add 1 line to Alpha – Sales").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Sub-account")).to_have_value(str(alpha.pk))
    expect(dialog).to_contain_text("needs 1 line more")
    with page.expect_navigation():
        dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("Moved 1 line.")).to_be_visible()
    assert Line.objects.get(pk=idle.pk).sub_account_id == alpha.pk
    assert Line.objects.filter(sub_account=alpha).count() == 2
    assert Line.objects.filter(sub_account=beta).count() == 1
