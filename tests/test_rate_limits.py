"""Rate limits (429 with Retry-After) and the request body size (413): portal.core.ratelimit."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from collections import Counter

import pytest
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DatabaseError, connection, transaction
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver

from portal.accounts.models import IdempotencyRecord, SecurityEvent, hash_api_key
from portal.billing.invoicing import invoice_issue
from portal.billing.periods import Cycle
from portal.core import ratelimit
from portal.core.clock import frozen_at
from portal.core.models import RateLimitBucket
from portal.core.ratelimit import Limit, Verdict, judge, parse_limit
from portal.jobs import periodic
from portal.partners.models import SubAccount
from tests.conftest import Api
from tests.factories import (
    SYSTEM,
    db_snapshot,
    make_lines,
    make_staff_key,
    make_sub_account,
    make_tenant,
    make_user,
)

BODY_LIMIT = "portal.core.ratelimit.RequestBodyLimitMiddleware"
RATE_LIMIT = "portal.core.ratelimit.RateLimitMiddleware"

# A whole hour: windows of 60 s and of 3600 s both start here.
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> frozen_at:
    return frozen_at(T0 + dt.timedelta(seconds=seconds))


def with_request_limits(middleware: list[str]) -> list[str]:
    """``MIDDLEWARE`` with both limits where ``settings.py`` puts them.

    The body limit right after the request id (before anything reads a body); the rate
    limit after authentication, sessions and HTMX, just before the JSON-body check and
    the idempotency middleware (so a 415 still counts, and a refusal is never stored as
    a key's answer).
    """
    stack = [m for m in middleware if m not in (BODY_LIMIT, RATE_LIMIT)]
    stack.insert(stack.index("portal.core.middleware.RequestContextMiddleware") + 1, BODY_LIMIT)
    stack.insert(stack.index("portal.core.middleware.JsonBodyMiddleware"), RATE_LIMIT)
    return stack


@pytest.fixture
def limits(settings):
    """Turn both middlewares on; ``limits(api="3/60", …)`` sets some limits."""
    settings.MIDDLEWARE = with_request_limits(settings.MIDDLEWARE)
    settings.RATE_LIMITS_ENABLED = True
    settings.PORTAL_RATE_LIMITS = {}

    def set_limits(**values: object) -> None:
        settings.PORTAL_RATE_LIMITS = values

    return set_limits


def statuses(call, times: int) -> list[int]:
    return [call().status_code for _ in range(times)]


def browser_for(partner, email: str, role: str = "admin") -> Client:
    client = Client()
    client.force_login(make_user(partner, email, role))
    return client


# --- Wiring --------------------------------------------------------------------------


def test_settings_install_both_middlewares_in_their_places():
    from portal import settings as project  # as deployed, before any test's overrides

    assert with_request_limits(project.MIDDLEWARE) == project.MIDDLEWARE


def test_the_bucket_pruning_job_is_registered():
    jobs = {job.name: job.every for job in periodic.registered_jobs()}
    assert jobs["prune_rate_limit_buckets"] == dt.timedelta(minutes=10)


# --- API keys ------------------------------------------------------------------------


def test_an_api_key_over_its_limit_gets_429_with_retry_after(tenant, api, limits):
    limits(api="3/60")
    with at(0):
        assert statuses(lambda: api.get("/sub-accounts"), 3) == [200, 200, 200]
        refused = api.get("/sub-accounts")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    detail = refused.json()["detail"]
    assert "Too many requests with this API key" in detail
    assert "at most 3 per minute" in detail
    # 4 hits this window: the next window's estimate is 1 + 4 × (1 − t/60) ≤ 3 at t = 30.
    assert refused["Retry-After"] == "90"
    assert "Try again in 90 seconds" in detail


def test_bodies_refused_as_not_json_count_against_the_limit(tenant, api, limits):
    limits(api="2/60")
    form = {"CONTENT_TYPE": "application/x-www-form-urlencoded"}

    def send_form():
        return api.client.generic("POST", "/api/v1/sub-accounts", b"name=Form", **form)

    with at(0):
        assert statuses(send_form, 3) == [415, 415, 429]


def test_retry_after_is_exactly_when_the_next_request_passes(tenant, limits):
    limits(api="3/60")
    early, on_time = Api(tenant.keys["admin"]), Api(tenant.keys["manager"])
    with at(0):
        for client in (early, on_time):
            assert statuses(lambda c=client: c.get("/lines"), 4) == [200, 200, 200, 429]
    with at(89):
        assert early.get("/lines").status_code == 429
    with at(90):
        assert on_time.get("/lines").status_code == 200
        assert on_time.get("/lines").status_code == 429  # 2 + 4 × 0.5 > 3
    with at(180):  # two windows later nothing weighs any more
        assert statuses(lambda: on_time.get("/lines"), 3) == [200, 200, 200]


def test_the_window_slides_instead_of_resetting(tenant, api, limits):
    limits(api="4/60")
    with at(50):
        assert statuses(lambda: api.get("/lines"), 4) == [200] * 4
    with at(90):  # a fixed window would allow 4 more here; half of the last 4 still weigh
        assert statuses(lambda: api.get("/lines"), 3) == [200, 200, 429]


def test_keys_are_counted_apart_by_their_hash(tenant, other_tenant, limits):
    limits(api="2/60")
    admin = Api(tenant.keys["admin"])
    with at(0):
        assert statuses(lambda: admin.get("/lines"), 3) == [200, 200, 429]
        assert Api(tenant.keys["viewer"]).get("/lines").status_code == 200
        assert Api(other_tenant.keys["admin"]).get("/lines").status_code == 200
    scopes = list(RateLimitBucket.objects.values_list("scope", flat=True))
    assert f"api:key:{hash_api_key(tenant.keys['admin'])}" in scopes
    assert not any(tenant.keys["admin"] in scope for scope in scopes)


def test_staff_keys_and_unknown_keys_are_limited_too(db, limits):
    limits(api="2/60")
    staff = Api(make_staff_key())
    unknown = Api("rpp_0000_not-a-real-key")
    with at(0):
        assert statuses(lambda: staff.get("/sub-accounts"), 3) == [200, 200, 429]
        assert statuses(lambda: unknown.get("/sub-accounts"), 3) == [401, 401, 429]


def test_requests_without_a_key_are_not_counted(db, limits):
    limits(api="1/60")
    with at(0):
        assert statuses(lambda: Api(None).get("/sub-accounts"), 3) == [401, 401, 401]
    assert not RateLimitBucket.objects.exists()


def test_the_first_refusal_of_a_streak_goes_to_the_security_log(tenant, api, limits):
    limits(api="1/60")
    with at(0):
        assert statuses(lambda: api.get("/lines"), 4) == [200, 429, 429, 429]
    events = SecurityEvent.objects.filter(action=ratelimit.RATE_LIMITED)
    assert events.count() == 1
    event = events.get()
    assert event.status == 429
    prefix = tenant.keys["admin"].split("_")[1]
    assert event.actor_label == f"key:{prefix}"
    assert "Rate limit api reached: 1 per 60 s." in event.reason


def test_a_refusal_is_not_stored_as_the_idempotency_keys_answer(tenant, api, limits):
    limits(api="1/60")
    with at(0):
        api.get("/lines")
        refused = api.post("/sub-accounts", {"name": "Later"}, HTTP_IDEMPOTENCY_KEY="k")
    assert refused.status_code == 429
    assert not IdempotencyRecord.objects.exists()
    with at(120):
        created = api.post("/sub-accounts", {"name": "Later"}, HTTP_IDEMPOTENCY_KEY="k")
    assert created.status_code == 201
    assert "Idempotent-Replayed" not in created


# --- Costly operations ---------------------------------------------------------------


def test_merge_and_deletion_requests_share_a_lower_limit(tenant, limits):
    limits(api="100/60", workflow="2/60")
    api = Api(tenant.keys["admin"])
    source = make_sub_account(tenant.partner, "Source")
    target = make_sub_account(tenant.partner, "Target")
    body = {"source_ids": [source.pk], "target_id": target.pk}
    with at(0):
        preview = api.post("/merge-requests/preview", body)
        assert preview.status_code == 200, preview.content
        assert api.post("/merge-requests", body).status_code == 201
        before = db_snapshot()
        refused = api.post("/deletion-requests", {"sub_account_id": source.pk})
        assert refused.status_code == 429
        assert "merge and deletion requests" in refused.json()["detail"]
        assert "at most 2 per minute" in refused.json()["detail"]
        assert db_snapshot() == before
        # Reading, and other writes, still pass: only the costly operations wait.
        assert api.get("/merge-requests").status_code == 200
        assert api.post("/sub-accounts", {"name": "Still fine"}).status_code == 201
        # Another key of the same partner has its own count.
        other = Api(tenant.keys["manager"]).post("/merge-requests/preview", body)
        assert other.status_code != 429


def test_merge_and_deletion_pages_count_against_the_same_kind_of_limit(tenant, limits):
    limits(workflow="2/60")
    browser = browser_for(tenant.partner, "requester@acme.example")
    doomed = make_sub_account(tenant.partner, "Doomed")
    with at(0):
        merge = f"/sub-accounts/{doomed.pk}/request-merge/"
        deletion = f"/sub-accounts/{doomed.pk}/request-deletion/"
        assert browser.post(merge, {}).status_code != 429
        assert browser.post(deletion, {}).status_code != 429
        refused = browser.post(merge, {})
        assert refused.status_code == 429
        assert browser.get(merge).status_code == 200  # showing the form is not costly
    assert refused["Content-Type"].startswith("text/html")
    assert refused["Retry-After"].isdigit()
    assert b"Too many merge and deletion requests" in refused.content


def test_exports_have_a_lower_limit_in_the_api_and_the_pages(tenant, limits):
    limits(api="100/60", page="100/60", export="2/60")
    with frozen_at(dt.datetime(2026, 4, 10, tzinfo=dt.UTC)):
        make_lines(tenant.partner, 1)
    cycle = Cycle(2026, 6, "UTC")
    with frozen_at(cycle.start):
        invoice = invoice_issue(principal=SYSTEM, partner=tenant.partner, cycle=cycle)
    api = Api(tenant.keys["billing"])
    browser = browser_for(tenant.partner, "books@acme.example")
    with at(0):
        assert api.get(f"/invoices/{invoice.pk}/csv").status_code == 200
        assert api.get(f"/invoices/{invoice.pk}/pdf").status_code == 200
        refused = api.get(f"/invoices/{invoice.pk}/csv")
        assert refused.status_code == 429
        assert "Too many downloads" in refused.json()["detail"]
        assert api.get(f"/invoices/{invoice.pk}").status_code == 200

        assert browser.get(f"/invoices/{invoice.pk}/pdf").status_code == 200
        assert browser.get("/analytics/sub-accounts.csv").status_code == 200
        assert browser.get(f"/invoices/{invoice.pk}/csv").status_code == 429
        assert browser.get(f"/invoices/{invoice.pk}/").status_code == 200


def _routes(resolver: URLResolver | None = None, prefix: str = "") -> list[tuple[str, str, str]]:
    """(namespace:name, example path) for every route without a regular expression."""
    resolver = resolver or get_resolver()
    found = []
    for entry in resolver.url_patterns:
        pattern = str(entry.pattern)
        if pattern.startswith("^"):
            continue  # the admin's catch-alls
        example = prefix + (
            pattern.replace("<int:", "<")
            .replace("<slug:", "<")
            .replace("<str:", "<")
            .replace("<path:", "<")
        )
        while "<" in example:
            start, end = example.index("<"), example.index(">")
            example = example[:start] + "7" + example[end + 1 :]
        if isinstance(entry, URLResolver):
            for name, path in _routes(entry, example):
                space = entry.namespace
                found.append((f"{space}:{name}" if space and ":" not in name else name, path))
        elif isinstance(entry, URLPattern) and entry.name:
            found.append((entry.name, example))
    return found


WORKFLOW_ROUTES = {
    "create_merge_request",
    "preview_merge",
    "create_deletion_request",
    "workflows:merge_new",
    "workflows:deletion_new",
}


def test_every_download_and_every_request_creation_route_is_costly():
    routes = _routes()
    names = {name.rsplit(":", 1)[-1] for name, _ in routes}
    assert {"get_invoice_csv", "get_invoice_pdf", "invoice_csv", "comparison_csv"} <= names
    # ninja gives GET and POST on one path a route each, under different names.
    by_path: dict[str, set[str]] = {}
    for name, path in routes:
        by_path.setdefault("/" + path, set()).add(name)
    for path, names_here in by_path.items():
        short = {name.rsplit(":", 1)[-1] for name in names_here}
        download = any("csv" in n or "pdf" in n for n in short)
        assert ("export" in ratelimit.costly_limits("GET", path)) == download, (names_here, path)
        creates = bool((names_here | short) & WORKFLOW_ROUTES)
        assert ("workflow" in ratelimit.costly_limits("POST", path)) == creates, (names_here, path)
        assert "workflow" not in ratelimit.costly_limits("GET", path)


# --- Pages ---------------------------------------------------------------------------


def test_pages_are_limited_per_logged_in_user(tenant, limits):
    limits(page="2/60")
    first = browser_for(tenant.partner, "one@acme.example")
    second = browser_for(tenant.partner, "two@acme.example")
    anonymous = Client()
    with at(0):
        assert statuses(lambda: first.get("/sub-accounts/"), 3) == [200, 200, 429]
        assert second.get("/sub-accounts/").status_code == 200
        assert statuses(lambda: anonymous.get("/login/"), 4) == [200] * 4
        refused = first.get("/lines/")
    assert refused.status_code == 429
    assert refused["Content-Type"].startswith("text/html")
    assert b"Too many requests" in refused.content
    assert int(refused["Retry-After"]) >= 1


# --- Password reset ------------------------------------------------------------------


def test_password_reset_is_limited_per_email_and_per_address(tenant, limits, mailoutbox):
    limits(password_reset_email="2/3600", password_reset_ip="5/3600")
    make_user(tenant.partner, "forgetful@acme.example", "manager")
    client = Client()

    def reset(email: str, ip: str = "192.0.2.1"):
        return client.post("/password-reset/", {"email": email}, REMOTE_ADDR=ip)

    with at(0):
        assert reset("forgetful@acme.example").status_code == 302
        assert reset("forgetful@acme.example").status_code == 302
        refused = reset("forgetful@acme.example")
        assert refused.status_code == 429
        assert b"password-reset requests for this email" in refused.content
        assert refused["Retry-After"].isdigit()
        assert reset("FORGETFUL@acme.example").status_code == 429  # the same email
        assert reset("someone@else.example").status_code == 302  # 5th from this address
        assert reset("third@else.example").status_code == 429
        assert reset("third@else.example", ip="192.0.2.2").status_code == 302
    assert len(mailoutbox) == 2  # only the two accepted requests for a real user sent mail
    assert not any(
        "forgetful" in s for s in RateLimitBucket.objects.values_list("scope", flat=True)
    )
    with at(3600 * 2):
        assert reset("forgetful@acme.example").status_code == 302


def test_login_throttling_is_unchanged(db, limits):
    client = Client()
    for _ in range(5):
        client.post("/login/", {"username": "who@x.example", "password": "nope"})
    response = client.post("/login/", {"username": "who@x.example", "password": "nope"})
    assert response.status_code == 429
    assert b"Too many failed login attempts" in response.content


# --- Settings ------------------------------------------------------------------------


def test_limits_can_be_turned_off(tenant, api, limits, settings):
    limits(api="1/60")
    settings.RATE_LIMITS_ENABLED = False
    with at(0):
        assert statuses(lambda: api.get("/lines"), 3) == [200] * 3
    assert not RateLimitBucket.objects.exists()
    settings.RATE_LIMITS_ENABLED = True
    limits(api="off")
    with at(0):
        assert statuses(lambda: api.get("/lines"), 3) == [200] * 3


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        ("600/60", Limit(600, 60)),
        (" 10 / minute ", Limit(10, 60)),
        ("5/h", Limit(5, 3600)),
        ("100/day", Limit(100, 86400)),
        ((30, 60), Limit(30, 60)),
        ([30, 60], Limit(30, 60)),
        ("off", None),
        (None, None),
    ],
)
def test_limits_are_written_count_per_period(value, limit):
    assert parse_limit("api", value) == limit


@pytest.mark.parametrize("value", ["600", "0/60", "10/0", "-1/60", "ten/minute", "10/fortnight", 7])
def test_a_malformed_limit_stops_the_server(value):
    with pytest.raises(ImproperlyConfigured, match="'api'"):
        parse_limit("api", value)


def test_an_unknown_limit_name_stops_the_server(settings):
    settings.PORTAL_RATE_LIMITS = {"apii": "1/60"}
    with pytest.raises(ImproperlyConfigured, match="apii"):
        ratelimit.RateLimitMiddleware(lambda request: None)


def test_the_defaults_are_generous_and_lower_for_costly_operations(settings):
    settings.PORTAL_RATE_LIMITS = {}
    configured = ratelimit.configured_limits()
    assert configured["api"] == configured["page"] == Limit(600, 60)
    assert configured["workflow"] == Limit(10, 60)
    assert configured["export"] == Limit(30, 60)
    assert configured["password_reset_email"].count < configured["password_reset_ip"].count


# --- The arithmetic ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hits", "previous", "elapsed", "verdict"),
    [
        (3, 0, 0, Verdict(True, 0, False)),
        (4, 0, 0, Verdict(False, 90, True)),
        (5, 0, 0, Verdict(False, 96, False)),
        # Half the previous window still weighs: 1 + 4 × 0.5 = 3 passes, 2 + 2 does not.
        (1, 4, 30, Verdict(True, 0, False)),
        (2, 4, 30, Verdict(False, 30, True)),
        # Room in this window once the previous one weighs less: 2 + 3 × (1 − t/60) ≤ 3 at t = 40.
        (1, 3, 0, Verdict(False, 40, True)),
        (1, 6, 10, Verdict(False, 40, False)),  # 2 + 6 × (1 − t/60) ≤ 3 at t = 50
        # No room in this one: wait for the next, where this window's hits weigh.
        (2, 6, 0, Verdict(False, 60, False)),
        (3, 0, 59.5, Verdict(True, 0, False)),
        (4, 0, 59.5, Verdict(False, 31, True)),
    ],
)
def test_the_sliding_estimate_and_retry_after(hits, previous, elapsed, verdict):
    assert judge(hits=hits, previous=previous, elapsed=elapsed, limit=Limit(3, 60)) == verdict


def test_expired_buckets_are_pruned(db):
    with at(0):
        ratelimit.hit("t:one", Limit(10, 60))
    with at(61):
        ratelimit.hit("t:one", Limit(10, 60))
    with at(119):
        assert ratelimit.prune_rate_limit_buckets() == 0
    with at(121):  # the first window no longer weighs on anything
        assert ratelimit.prune_rate_limit_buckets() == 1
    assert list(RateLimitBucket.objects.values_list("window_start", "hits")) == [
        (int(T0.timestamp()) + 60, 1)
    ]


@pytest.mark.django_db(transaction=True)
def test_every_connection_counts_into_the_same_buckets(settings):
    """Requests from several threads (one connection each, like several processes)."""
    settings.MIDDLEWARE = with_request_limits(settings.MIDDLEWARE)
    settings.RATE_LIMITS_ENABLED = True
    settings.PORTAL_RATE_LIMITS = {"api": "5/3600"}
    key = make_tenant("Busy Partner").keys["viewer"]
    barrier = threading.Barrier(8, timeout=30)
    results: list[object] = [None] * 8

    def worker(i: int) -> None:
        try:
            client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
            barrier.wait()
            results[i] = client.get("/api/v1/lines").status_code
        except BaseException as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert Counter(results) == {200: 5, 429: 3}, results
    assert sum(RateLimitBucket.objects.values_list("hits", flat=True)) == 8


@pytest.mark.django_db(transaction=True)
def test_counting_is_one_statement_that_commits_on_its_own():
    """Outside a transaction: no BEGIN/COMMIT round trips, and the count is kept at once."""
    limit = Limit(count=5, seconds=60)
    with CaptureQueriesContext(connection) as queries:
        assert ratelimit.hit("api:key:solo", limit).allowed
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    assert RateLimitBucket.objects.get(scope="api:key:solo").hits == 1
    if connection.vendor == "postgresql":  # no WAL for counters (migration core 0002)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
                [RateLimitBucket._meta.db_table],
            )
            assert cursor.fetchone() == ("u",)


def test_a_failed_count_inside_a_transaction_leaves_it_usable(tenant, monkeypatch):
    """The middleware lets a request through when counting fails; inside a transaction
    (as in tests, or a caller's atomic block) that failure must not poison it."""
    monkeypatch.setattr(ratelimit, "_UPSERT", "SELECT no_such_column FROM {table}")
    with transaction.atomic():
        with pytest.raises(DatabaseError):
            ratelimit.hit("api:key:broken", Limit(count=5, seconds=60))
        assert SubAccount.objects.filter(partner=tenant.partner).exists()


# --- Request body size ---------------------------------------------------------------


def test_an_api_body_over_the_limit_gets_413_json(tenant, api, limits, settings):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert limit == 8 * 1024 * 1024
    before = db_snapshot()
    padding = "n" * (limit + 1 - len(json.dumps({"name": "Big", "notes": ""})))
    too_big = json.dumps({"name": "Big", "notes": padding})
    assert len(too_big) == limit + 1
    response = api.post("/sub-accounts", raw=too_big, HTTP_IDEMPOTENCY_KEY="big")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The request body is too large: at most 8,388,608 bytes."}
    assert db_snapshot() == before
    assert not IdempotencyRecord.objects.exists()
    # One byte less is read and judged by the endpoint itself.
    just_fits = too_big[:-3] + '"}'
    assert len(just_fits) == limit
    assert api.post("/sub-accounts", raw=just_fits).status_code == 422


def test_a_page_body_over_the_limit_gets_413(tenant, limits, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    browser = browser_for(tenant.partner, "big@acme.example")
    response = browser.post("/sub-accounts/new/", {"name": "Big", "notes": "n" * 1000})
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    assert b"at most 1,000 bytes" in response.content
    assert not SubAccount.objects.filter(name="Big").exists()


def _chunked(path: str, body: bytes, key: str) -> dict[str, object]:
    """A WSGI environ as gunicorn builds it for a chunked body: no Content-Length."""
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
    }


def test_a_chunked_body_is_read_and_limited_too(tenant, limits, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    key = tenant.keys["admin"]
    small = json.dumps({"name": "Sent in chunks"}).encode()
    created = Client().request(**_chunked("/api/v1/sub-accounts", small, key))
    assert created.status_code == 201, created.content
    assert created.json()["name"] == "Sent in chunks"
    big = json.dumps({"name": "Chunks", "notes": "n" * 1000}).encode()
    refused = Client().request(**_chunked("/api/v1/sub-accounts", big, key))
    assert refused.status_code == 413
    assert "too large" in refused.json()["detail"]
    assert not SubAccount.objects.filter(name="Chunks").exists()


def test_uploads_may_be_larger_than_form_fields(db, limits, settings):
    from portal.accounts.services import staff_create

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.PORTAL_MAX_UPLOAD_SIZE = 20_000
    staff = Client()
    staff.force_login(staff_create(principal=SYSTEM, email="ops@provider.example"))
    numbers = "number\n" + "".join(f"+1415555{i:04d}\n" for i in range(300))
    assert 1000 < len(numbers) < 20_000
    upload = SimpleUploadedFile("numbers.csv", numbers.encode(), content_type="text/csv")
    accepted = staff.post("/staff/inventory/", {"file": upload})
    assert accepted.status_code in (200, 302), accepted.content[:300]
    huge = SimpleUploadedFile("numbers.csv", b"number\n" + b"1" * 20_000, content_type="text/csv")
    assert staff.post("/staff/inventory/", {"file": huge}).status_code == 413
    # Form fields (not files) over DATA_UPLOAD_MAX_MEMORY_SIZE: 413 too, not Django's 400.
    fields = staff.post("/staff/inventory/", {"note": "x" * 2000})
    assert fields.status_code == 413
    assert b"at most 1,000 bytes" in fields.content


def test_a_view_running_into_the_body_limit_gets_413(db):
    middleware = ratelimit.RequestBodyLimitMiddleware(lambda request: None)
    api_request = RequestFactory().post("/api/v1/sub-accounts", {})
    page_request = RequestFactory().post("/sub-accounts/new/", {})
    error = RequestDataTooBig("too big")
    assert middleware.process_exception(api_request, error).status_code == 413
    assert middleware.process_exception(page_request, error).status_code == 413
    assert middleware.process_exception(page_request, ValueError("other")) is None
