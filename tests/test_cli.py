"""The `portal` commands of domain §6, in process (call_command) and as the real script."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
from collections import defaultdict
from decimal import Decimal
from io import StringIO
from itertools import pairwise
from pathlib import Path

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.db import connections, transaction
from django.test import Client

from portal.accounts.models import ApiKey, Membership, User
from portal.analytics.models import DailySubAccountRollup
from portal.audit.models import AuditEvent
from portal.billing.models import (
    Invoice,
    InvoiceItem,
    InvoiceStatus,
    ResalePriceChange,
    Statement,
    StatementItem,
)
from portal.core import clock
from portal.core.principal import Principal
from portal.demo.seed import (
    CLIENTS,
    DEMO_ALERT_RULES,
    DEMO_CLIENT,
    DEMO_PASSWORD,
    DEMO_USERS,
    DISCONNECTS,
    HISTORY_DAYS,
    RESALE_PRICES,
    STAFF_EMAIL,
    WAITING_AREA_CODE,
    demo_logins,
    seed_demo,
)
from portal.lines.models import AssignmentPeriod, InventoryNumber, Line, LineOrder, LineStatus
from portal.lines.services import line_order_create
from portal.partners.models import Partner, SubAccount, SubAccountKind
from portal.workflows.models import DeletionRequest, DeletionStatus, MergeRequest, MergeStatus
from tests import factories
from tests.portal_process import PORTAL, children_of, free_port, is_alive, run_portal

COMMANDS = {
    "createpartner": "portal.partners",
    "createstaff": "portal.accounts",
    "createapikey": "portal.accounts",
    "importnumbers": "portal.lines",
    "serve": "portal.jobs",
    "worker": "portal.jobs",
    "demo": "portal.demo",
    "runbilling": "portal.billing",
}


def call(*args: str, **options) -> list[str]:
    """Run a command in process; its stdout as lines."""
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue().splitlines()


# --- help ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "app"), sorted(COMMANDS.items()))
def test_every_command_has_help(name, app):
    command = load_command_class(app, name)
    text = command.create_parser("portal", name).format_help()

    assert text.startswith(f"usage: portal {name}")
    assert len(command.help) > 40


def test_help_works_from_the_installed_script():
    result = run_portal("createpartner", "--help")

    assert result.returncode == 0
    assert "--owner-email" in result.stdout
    assert "--line-price" in result.stdout


# --- createpartner ---------------------------------------------------------------------


@pytest.mark.django_db
def test_createpartner_creates_partner_pool_and_admin():
    lines = call(
        "createpartner",
        "--name",
        "Skyline Telecom",
        "--owner-email",
        "Owner@Skyline.example",
        "--password",
        "long-enough-pass",
        "--currency",
        "eur",
        "--timezone",
        "Europe/Paris",
        "--line-price",
        "42.50",
    )

    assert lines[-1] == "skyline-telecom"
    partner = Partner.objects.get(slug="skyline-telecom")
    assert (partner.currency, partner.timezone, str(partner.line_price)) == (
        "EUR",
        "Europe/Paris",
        "42.5000",
    )
    pool = SubAccount.objects.get(partner=partner)
    assert pool.kind == SubAccountKind.AVAILABLE
    membership = Membership.objects.get(partner=partner)
    assert (membership.user.email, membership.role) == ("owner@skyline.example", "admin")
    assert Client().login(username="owner@skyline.example", password="long-enough-pass")
    actions = set(
        AuditEvent.objects.filter(partner_id=partner.pk).values_list("action", "actor_label")
    )
    assert actions == {
        ("partner.create", "cli:createpartner"),
        ("user.create", "cli:createpartner"),
    }


@pytest.mark.django_db
def test_createpartner_generates_and_prints_a_password():
    lines = call("createpartner", "--name", "Quiet Co", "--owner-email", "q@quiet.example")

    assert lines[-1] == "quiet-co"
    password = next(line for line in lines if line.startswith("Password")).split(": ", 1)[1]
    assert len(password) >= 16
    assert Client().login(username="q@quiet.example", password=password)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--timezone", "Mars/Olympus"], "Timezone 'Mars/Olympus'"),
        (["--currency", "dollars"], "ISO 4217"),
        (["--line-price", "-3"], "Line price"),
        (["--password", "short"], "too short"),
    ],
)
def test_createpartner_refuses_bad_input_and_creates_nothing(extra, message):
    with pytest.raises(CommandError, match=message):
        call("createpartner", "--name", "Broken Co", "--owner-email", "b@broken.example", *extra)

    assert not Partner.objects.exists()
    assert not User.objects.exists()


@pytest.mark.django_db
def test_createpartner_refuses_an_existing_email_and_rolls_back_the_partner():
    factories.make_user(factories.make_partner("First"), "taken@example.com", "viewer")

    with pytest.raises(CommandError, match="already exists"):
        call("createpartner", "--name", "Second", "--owner-email", "TAKEN@example.com")

    assert not Partner.objects.filter(name="Second").exists()


@pytest.mark.django_db(transaction=True)
def test_createpartner_as_a_process():
    good = run_portal("createpartner", "--name", "Process Co", "--owner-email", "p@process.example")
    bad = run_portal(
        "createpartner",
        "--name",
        "Other Co",
        "--owner-email",
        "o@other.example",
        "--timezone",
        "Nowhere/Land",
    )

    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1] == "process-co"
    password = good.stdout.split("Password (shown once): ", 1)[1].split()[0]
    assert Client().login(username="p@process.example", password=password)
    assert SubAccount.objects.get(partner__slug="process-co").kind == SubAccountKind.AVAILABLE

    assert bad.returncode == 1
    assert "Timezone 'Nowhere/Land' is not an IANA name" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not Partner.objects.filter(name="Other Co").exists()
    assert not User.objects.filter(email="o@other.example").exists()


# --- createstaff -----------------------------------------------------------------------


@pytest.mark.django_db
def test_createstaff_creates_a_staff_user_who_can_log_in():
    lines = call("createstaff", "--email", "ops@provider.example", "--password", "staff-pass-99")

    user = User.objects.get(email="ops@provider.example")
    assert user.is_staff and not user.is_superuser
    assert not Membership.objects.filter(user=user).exists()
    assert Client().login(username="ops@provider.example", password="staff-pass-99")
    assert "ops@provider.example" in lines[-1]


@pytest.mark.django_db
def test_createstaff_refuses_a_duplicate():
    call("createstaff", "--email", "ops@provider.example")

    with pytest.raises(CommandError, match="already exists"):
        call("createstaff", "--email", "OPS@provider.example")


# --- createapikey ----------------------------------------------------------------------


@pytest.mark.django_db
def test_createapikey_prints_a_partner_key_that_authenticates(api_as):
    partner = factories.make_partner("Keyed Co")
    factories.make_sub_account(partner, "Client A – Sales")

    key = call("createapikey", "--partner", partner.slug, "--role", "viewer", "--name", "CRM")[-1]

    response = api_as(key).get("/sub-accounts")
    assert response.status_code == 200
    assert [item["name"] for item in response.json()["items"]] == ["Available", "Client A – Sales"]
    stored = ApiKey.objects.get()
    assert (stored.partner_id, stored.role, stored.name) == (partner.pk, "viewer", "CRM")
    assert key not in stored.key_hash  # only a hash is kept


@pytest.mark.django_db
def test_createapikey_prints_a_staff_key(api_as):
    partner = factories.make_partner("Watched Co")

    key = call("createapikey", "--staff", "--name", "Messaging platform")[-1]

    assert api_as(key).get("/sub-accounts", partner=partner.slug).status_code == 200
    assert ApiKey.objects.get().is_staff


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--staff", "--partner", "x"], "staff key has no partner"),
        (["--staff", "--role", "admin"], "staff key has no partner"),
        (["--partner", "no-such-partner", "--role", "admin"], "not found"),
        (["--partner", "{slug}", "--role", "owner"], "Role 'owner' is not one of"),
        (["--partner", "{slug}"], "--role"),
        ([], "--staff"),
    ],
)
def test_createapikey_refuses_bad_combinations(args, message):
    partner = factories.make_partner("Strict Co")
    args = [a.replace("{slug}", partner.slug) for a in args]

    with pytest.raises(CommandError, match=message):
        call("createapikey", "--name", "k", *args)

    assert not ApiKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_createapikey_as_a_process(api_as):
    partner = factories.make_partner("Remote Co")

    result = run_portal(
        "createapikey", "--partner", partner.slug, "--role", "admin", "--name", "ci"
    )

    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert api_as(key).get("/sub-accounts").status_code == 200
    assert api_as(key + "x").get("/sub-accounts").status_code == 401


# --- importnumbers ---------------------------------------------------------------------


def waiting_order(partner: Partner, quantity: int, area_code: str) -> LineOrder:
    order = line_order_create(
        principal=factories.SYSTEM.acting_for(partner.pk), quantity=quantity, area_code=area_code
    )
    assert order.status == "pending"
    return order


@pytest.mark.django_db
def test_importnumbers_reports_rejected_rows_and_fulfils_waiting_orders(tmp_path):
    partner = factories.make_partner("Waiting Co")
    order = waiting_order(partner, 2, "213")
    csv_file = tmp_path / "numbers.csv"
    csv_file.write_text(
        "\ufeffNumber,area_code\n"
        "+1 213 555 0101,\n"
        "not-a-number,\n"
        "+12135550102,\n"
        "+12135550101,\n"
        ",\n"
        "+13125550100,312\n",
        encoding="utf-8",
    )

    lines = call("importnumbers", str(csv_file))

    assert lines[0] == "Added 3 numbers to the inventory; 3 rows rejected."
    assert lines[1] == "Delivered 2 lines to waiting orders."
    assert lines[2] == "Rejected rows:"
    assert lines[3].startswith("  row 3: not-a-number: ")
    assert lines[4] == "  row 5: +12135550101: Repeated earlier in the file."
    assert lines[5].startswith("  row 6: (empty): ")
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert set(Line.objects.filter(order=order).values_list("number", flat=True)) == {
        "+12135550101",
        "+12135550102",
    }
    assert InventoryNumber.objects.filter(status="in_stock").count() == 1


@pytest.mark.django_db
def test_importnumbers_reads_stdin():
    lines = call("importnumbers", "-", stdin=StringIO("number\n+14155550188\n"))

    assert lines[0] == "Added 1 number to the inventory; 0 rows rejected."
    assert InventoryNumber.objects.filter(number="+14155550188").exists()


@pytest.mark.django_db
def test_importnumbers_refuses_unreadable_files(tmp_path):
    no_column = tmp_path / "phones.csv"
    no_column.write_text("phone\n+14155550100\n")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("number,note\n+14155550100,café\n".encode("latin-1"))

    with pytest.raises(CommandError, match="no such file"):
        call("importnumbers", str(tmp_path / "missing.csv"))
    with pytest.raises(CommandError, match="'number' column"):
        call("importnumbers", str(no_column))
    with pytest.raises(CommandError, match="not UTF-8"):
        call("importnumbers", str(latin1))
    with pytest.raises(CommandError, match="directory"):
        call("importnumbers", str(tmp_path))
    assert not InventoryNumber.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_importnumbers_as_a_process(tmp_path):
    partner = factories.make_partner("Piped Co")
    order = waiting_order(partner, 1, "617")

    result = run_portal("importnumbers", "-", stdin="number\n+16175550100\nbogus\n")
    missing = run_portal("importnumbers", str(tmp_path / "nope.csv"))

    assert result.returncode == 0, result.stderr
    assert "Delivered 1 line to waiting orders." in result.stdout
    assert "row 3: bogus: " in result.stdout
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert missing.returncode == 1
    assert "no such file" in missing.stderr


# --- serve -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_serve_runs_gunicorn_and_collects_static_only_once(monkeypatch, settings, tmp_path):
    from portal.jobs.management.commands import serve

    started: list[dict] = []
    monkeypatch.setattr(serve.PortalServer, "run", lambda self: started.append(self.options))
    monkeypatch.setattr(connections, "close_all", lambda: None)  # keep the test's connection
    settings.STATIC_ROOT = tmp_path / "static"
    from portal import settings as deployed

    settings.STORAGES = deployed.STORAGES  # the hashed manifest, not the tests' plain storage
    collected: list[str] = []
    real_call_command = serve.call_command

    def spy(name, *args, **kwargs):
        collected.append(name)
        return real_call_command(name, *args, **kwargs)

    monkeypatch.setattr(serve, "call_command", spy)

    lines = call("serve", "--port", "8123", "--workers", "3")
    call("serve", "--host", "0.0.0.0")  # noqa: S104

    assert collected == ["collectstatic"]  # the second start finds the manifest
    assert (tmp_path / "static" / "staticfiles.json").exists()
    assert started[0]["bind"] == "127.0.0.1:8123"
    assert started[0]["workers"] == 3
    assert started[1]["bind"] == "0.0.0.0:8000"
    assert lines[-1] == "Serving the portal on http://127.0.0.1:8123/"


def test_serve_reads_its_defaults_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORTAL_HOST", "10.1.2.3")
    monkeypatch.setenv("PORTAL_PORT", "9001")
    parser = load_command_class("portal.jobs", "serve").create_parser("portal", "serve")

    options = parser.parse_args([])

    assert (options.host, options.port) == ("10.1.2.3", 9001)


# --- demo data -------------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_demo_builds_two_partners_through_the_services():
    result = seed_demo(stdout=StringIO())

    demo, other = result.partner, result.other_partner
    demo.refresh_from_db()
    assert (demo.name, demo.timezone, demo.currency, demo.line_price) == (
        "Demo Reseller",
        "America/New_York",
        "USD",
        Decimal("50.00"),
    )
    assert other.name == "Northwind Messaging"
    standard = SubAccount.objects.filter(partner=demo, kind=SubAccountKind.STANDARD)
    assert standard.count() == 12
    assert all(" – " in sa.name and sa.contact_email for sa in standard)
    # Each client its own phone and internal reference (they head its statements).
    assert len({(sa.contact_phone, sa.internal_reference) for sa in standard}) == 12
    assert Line.objects.filter(partner=demo).count() == 300
    assert Line.objects.filter(partner=demo, status=LineStatus.DISCONNECTED).count() == DISCONNECTS
    pool = SubAccount.objects.get(partner=demo, kind=SubAccountKind.AVAILABLE)
    assert 30 <= pool.line_count <= 50
    assigned = Line.objects.filter(partner=demo, status="active").exclude(sub_account=pool)
    assert assigned.exclude(label="").exclude(user_name="").count() == assigned.count()
    pending = LineOrder.objects.get(partner=demo, status="pending")
    assert pending.area_code == WAITING_AREA_CODE
    assert SubAccount.objects.filter(partner=other, kind=SubAccountKind.STANDARD).count() == 2
    assert Line.objects.filter(partner=other).count() > 0

    # Logins: every demo user and the staff user, all with the demo password.
    for email, role, _ in DEMO_USERS:
        assert Membership.objects.get(user__email=email).role == role
        assert Client().login(username=email, password=DEMO_PASSWORD)
    assert User.objects.get(email=STAFF_EMAIL).is_staff
    assert Client().login(username=STAFF_EMAIL, password=DEMO_PASSWORD)
    demo_key = Principal.for_api_key(ApiKey.objects.get(partner=demo))
    assert demo_key.role == "admin"

    # The reseller's client: its two sub-accounts, both with statements, nothing else.
    client = Client()
    assert client.login(username=DEMO_CLIENT[0], password=DEMO_PASSWORD)
    granted = {CLIENTS[i][0] for i in DEMO_CLIENT[2]}
    listed = client.get("/sub-accounts/").content.decode()
    assert all(name in listed for name in granted)
    assert CLIENTS[5][0] not in listed
    statements = Statement.objects.filter(partner=demo, sub_account__name__in=granted)
    assert {s.sub_account.name for s in statements} == granted
    page = client.get("/billing/statements/?period=all").content.decode()
    assert all(f"Statement {s.number}" in page for s in statements)
    assert (DEMO_CLIENT[0], "client") in demo_logins()


@pytest.mark.django_db
def test_seed_demo_keeps_every_invariant():
    seed_demo(stdout=StringIO())

    # line_count is every sub-account's number of active lines.
    for sub_account in SubAccount.objects.all():
        active = Line.objects.filter(sub_account=sub_account, status=LineStatus.ACTIVE).count()
        assert sub_account.line_count == active, sub_account.name

    # Assignment periods tile each line's life: no gap, no overlap, one open while active.
    periods = defaultdict(list)
    for period in AssignmentPeriod.objects.order_by("line_id", "start", "id"):
        periods[period.line_id].append(period)
    for line in Line.objects.all():
        history = periods[line.pk]
        assert history[0].start == line.activated_at
        for before, after in pairwise(history):
            assert before.end == after.start, line.number
            assert before.sub_account_id != after.sub_account_id
        if line.status == LineStatus.ACTIVE:
            assert history[-1].end is None
            assert history[-1].sub_account_id == line.sub_account_id
        else:
            assert history[-1].end == line.disconnected_at

    # The history spreads over the past three months, and moves were made.
    demo = Partner.objects.get(name="Demo Reseller")
    moved = AuditEvent.objects.filter(partner_id=demo.pk, action="line.move")
    assert moved.count() >= 40
    days = {event.at.date() for event in moved}
    assert len(days) >= 20
    first_line = Line.objects.filter(partner=demo).order_by("activated_at").first()
    assert 80 <= (clock.now() - first_line.activated_at).days <= HISTORY_DAYS


@pytest.mark.django_db
def test_seed_demo_shows_what_the_article_promises():
    """Issue 18.14: past invoices with discounts, credits and prorations, a completed
    merge, a deletion in retention, and analytics over the whole history."""
    seed_demo(stdout=StringIO())
    demo = Partner.objects.get(name="Demo Reseller")

    invoices = list(Invoice.objects.filter(partner=demo).order_by("period_month"))
    assert len(invoices) >= 3
    months = [invoice.period_month for invoice in invoices]
    assert months == sorted(set(months))  # one per cycle, none missing in between
    assert all(invoice.status == InvoiceStatus.FINALIZED for invoice in invoices[:-1])
    kinds = set(
        InvoiceItem.objects.filter(section__invoice__partner=demo).values_list("kind", flat=True)
    )
    assert {"recurring", "discount", "credit", "move_charge", "move_credit"} <= kinds
    for invoice in invoices:  # each invoice is the sum of its items
        items = InvoiceItem.objects.filter(section__invoice=invoice)
        assert sum(item.amount for item in items) == invoice.total

    merge = MergeRequest.objects.get(partner=demo)
    assert merge.status == MergeStatus.COMPLETED
    source = merge.sources.get().sub_account
    assert source.merged_into_id == merge.target_id and source.line_count == 0

    deletion = DeletionRequest.objects.get(partner=demo)
    assert deletion.status == DeletionStatus.SCHEDULED
    assert deletion.purge_after > clock.now()
    assert deletion.sub_account.status == "pending_deletion"

    # Client statements (issue 19): every invoice from the first resale price on carries
    # the priced sub-accounts' statements, numbered 1, 2, 3 … per sub-account, each the
    # sum of its items; the other partner set no resale price and has none.
    first_priced = (
        ResalePriceChange.objects.filter(partner=demo).order_by("effective_month").first()
    ).effective_month
    priced = [invoice for invoice in invoices if invoice.period_month >= first_priced]
    assert len(priced) >= 2
    clients = SubAccount.objects.filter(partner=demo, kind=SubAccountKind.STANDARD)
    overridden = set(
        clients.filter(name__in=[CLIENTS[i][0] for i in RESALE_PRICES]).values_list("pk", flat=True)
    )
    for invoice in priced:
        billed = set(invoice.statements.values_list("sub_account_id", flat=True))
        assert overridden & billed, invoice.period_month
    statements = Statement.objects.filter(partner=demo)
    numbers = defaultdict(list)
    for statement in statements.order_by("period_month"):
        numbers[statement.sub_account_id].append(statement.number)
        items = StatementItem.objects.filter(statement=statement)
        assert sum(item.amount for item in items) == statement.total
        assert statement.partner_name == "Demo Reseller"
    assert all(n == list(range(1, len(n) + 1)) for n in numbers.values())
    assert not Statement.objects.filter(partner__name="Northwind Messaging").exists()

    rollup_days = DailySubAccountRollup.objects.filter(partner_id=demo.pk).values("day")
    first, last = min(r["day"] for r in rollup_days), max(r["day"] for r in rollup_days)
    assert (last - first).days >= 80

    # Alert rules (issue 22): the manager's rules, evaluated over the seeded traffic, with
    # alerts firing for the sub-accounts the Analytics comparison flags.
    from portal.alerts.models import Alert, AlertRule

    assert AlertRule.objects.filter(partner=demo).count() == len(DEMO_ALERT_RULES)
    firing = Alert.objects.filter(partner=demo, status="firing")
    assert firing.filter(metric="response_rate").exists()
    assert firing.filter(metric="over_pressured_line_days").exists()
    assert not Alert.objects.filter(partner__name="Northwind Messaging").exists()


@pytest.mark.django_db
def test_seed_demo_is_deterministic():
    def snapshot() -> list[tuple]:
        return list(
            Line.objects.order_by("number").values_list(
                "number", "status", "sub_account__name", "label", "user_name", "daily_limit"
            )
        )

    with transaction.atomic():
        seed_demo(stdout=StringIO())
        first = snapshot()
        transaction.set_rollback(True)
    assert not Partner.objects.exists()

    seed_demo(stdout=StringIO())

    assert snapshot() == first


# --- portal demo, end to end -----------------------------------------------------------


def _read_lines(stream, into: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        into.put(line)
    into.put(None)


def test_portal_demo_runs_the_site_and_stops_both_children_on_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "PORTAL_VAR_DIR": str(tmp_path / "var")}
    env.pop("DATABASE_URL", None)  # the demo's embedded SQLite database
    env.pop("PORTAL_SECRET_KEY", None)
    demo = subprocess.Popen(
        [PORTAL, "demo", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(demo.stdout, lines), daemon=True).start()
    children: list[int] = []
    try:
        # A liveness limit, not a speed target: seeding takes ~10 s alone and several
        # minutes on a box whose cores another test run is using.
        deadline = time.monotonic() + 300
        while not any("Press Ctrl-C to stop." in line for line in output):
            assert demo.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is not None:
                output.append(line)
        text = "".join(output)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/docs", timeout=10) as response:
            assert response.status == 200
        assert f"http://127.0.0.1:{port}/" in text
        for email, _, _ in DEMO_USERS:
            assert f"{email} / {DEMO_PASSWORD}" in text
        assert f"{STAFF_EMAIL} / {DEMO_PASSWORD}" in text
        children = children_of(demo.pid)
        assert len(children) == 2, children

        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in children:
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)

    while (line := lines.get(timeout=10)) is not None:
        output.append(line)
    text = "".join(output)
    assert demo.returncode == 0, text
    assert "Demo stopped." in text
    assert "Traceback" not in text
    assert not [pid for pid in children if is_alive(pid)]
    assert Path(tmp_path / "var" / "portal.sqlite3").exists()
