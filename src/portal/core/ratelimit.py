"""Request limits: how often a client may ask (429) and how large a body may be (413).

**Rate limits** (:class:`RateLimitMiddleware`). Each request counts against one or
more named limits, per client:

======================== ================================================== ==========
limit                    counts                                             default
======================== ================================================== ==========
``api``                  every ``/api/`` request, per bearer key             600 / 60 s
``page``                 every other request of a logged-in user, per user   600 / 60 s
``workflow``             creating or previewing a merge or deletion request  10 / 60 s
                         (POST, API or page), per key or user
``export``               a CSV or PDF download (a path ending in ``/csv``,   30 / 60 s
                         ``/pdf``, ``.csv`` or ``.pdf``), per key or user
``password_reset_ip``    asking for a password-reset link, per address       20 / 3600 s
``password_reset_email`` asking for a password-reset link, per email         5 / 3600 s
======================== ================================================== ==========

A costly request counts against its own limit and the general one. A key is
identified by its keyed hash (the ``ApiKey.key_hash`` of a real key), so an unknown
key is limited like a known one and no lookup is needed; staff keys are limited too.
Anonymous requests count only against the password-reset limits (logging in has its
own throttling in :mod:`portal.accounts.services`).

Counting is a sliding window estimated from two fixed windows: the current window's
count plus the previous window's, weighted by how much of it still lies within one
window length of now. Counts live in the database (:class:`RateLimitBucket`, one
atomic upsert per limit and request) so every web process shares them. Refused
requests count too: a client that keeps hammering stays refused, one that waits
``Retry-After`` seconds gets through. The first refusal of a streak is noted in the
security log. A database that cannot count lets the request through (logged).

Settings: ``RATE_LIMITS_ENABLED`` (default on) and ``PORTAL_RATE_LIMITS``, a dict
that overrides some of the defaults: ``"count/seconds"``, ``"count/minute"`` (also
``s``, ``min``, ``hour``, ``h``, ``day``, ``d``) or ``(count, seconds)``; ``"off"``
or ``None`` turns one limit off.

**Body size** (:class:`RequestBodyLimitMiddleware`). A body over
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (a ``multipart/form-data`` upload: over
``PORTAL_MAX_UPLOAD_SIZE``, default 32 MB) is answered 413 before anything reads it:
JSON ``{"detail": …}`` for the API, a short page otherwise. Django alone would answer
400. A chunked body without ``Content-Length`` is read here, up to the limit, since
Django would otherwise see an empty body.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.core.handlers.wsgi import LimitedStream
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.html import escape

from portal.core import clock
from portal.core.middleware import client_ip, content_length, is_api
from portal.core.models import RateLimitBucket

logger = logging.getLogger("portal.ratelimit")

DEFAULT_LIMITS: dict[str, Any] = {
    "api": "600/60",
    "page": "600/60",
    "workflow": "10/60",
    "export": "30/60",
    "password_reset_ip": "20/3600",
    "password_reset_email": "5/3600",
}

# What a refusal tells the client it ran into.
_DESCRIPTIONS = {
    "api": "requests with this API key",
    "page": "requests",
    "workflow": "merge and deletion requests",
    "export": "downloads",
    "password_reset_ip": "password-reset requests from this address",
    "password_reset_email": "password-reset requests for this email",
}

_UNITS = {
    "s": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}

RATE_LIMITED = "rate.limited"  # the security log's action for a refusal


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` requests per ``seconds``."""

    count: int
    seconds: int


def parse_limit(name: str, value: Any) -> Limit | None:
    """``"600/60"``, ``"600/minute"`` or ``(600, 60)`` as a :class:`Limit`; off → None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "off"}):
        return None
    try:
        if isinstance(value, str):
            count_text, _, per = value.strip().partition("/")
            per = per.strip().lower()
            seconds = _UNITS[per] if per in _UNITS else int(per)
            count = int(count_text)
        else:
            count, seconds = (int(part) for part in value)
    except (KeyError, TypeError, ValueError):
        count = seconds = 0
    if count < 1 or seconds < 1:
        raise ImproperlyConfigured(
            f"Rate limit {name!r} must be 'count/seconds' (such as '600/60' or '10/minute') "
            f"with both at least 1, or 'off'; got {value!r}."
        )
    return Limit(count=count, seconds=seconds)


def configured_limits() -> dict[str, Limit | None]:
    """The defaults with ``settings.PORTAL_RATE_LIMITS`` applied on top."""
    overrides = getattr(settings, "PORTAL_RATE_LIMITS", None) or {}
    frozen = tuple(
        sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in overrides.items())
    )
    return _resolve(frozen)


@functools.lru_cache(maxsize=8)
def _resolve(overrides: tuple[tuple[str, Any], ...]) -> dict[str, Limit | None]:
    unknown = sorted(name for name, _ in overrides if name not in DEFAULT_LIMITS)
    if unknown:
        raise ImproperlyConfigured(
            f"PORTAL_RATE_LIMITS names unknown limits {unknown}; known: {sorted(DEFAULT_LIMITS)}."
        )
    values = DEFAULT_LIMITS | dict(overrides)
    return {name: parse_limit(name, value) for name, value in values.items()}


# --- Counting ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after: int  # whole seconds until a request would be allowed again; 0 when allowed
    first_refusal: bool  # refused, and the request before it was not


_UPSERT = """
INSERT INTO {table} (scope, window_start, hits, expires_at) VALUES (%s, %s, 1, %s)
ON CONFLICT (scope, window_start) DO UPDATE SET hits = {table}.hits + 1
RETURNING hits, (
    SELECT previous.hits FROM {table} AS previous
    WHERE previous.scope = %s AND previous.window_start = %s
)
"""


def hit(scope: str, limit: Limit) -> Verdict:
    """Count one request for ``scope`` (at most 100 characters) and judge it."""
    now = clock.now().timestamp()
    period = limit.seconds
    start = int(now // period) * period
    table = connection.ops.quote_name(RateLimitBucket._meta.db_table)
    # One statement, so outside a transaction it commits on its own: one round trip. On
    # PostgreSQL the table is UNLOGGED (migration core 0002), so that commit writes no
    # WAL and waits for no disk, and the hot row of a busy key is locked only briefly.
    # Inside a transaction, a savepoint keeps a failed count from breaking it.
    savepoint = transaction.atomic() if connection.in_atomic_block else nullcontext()
    with savepoint, connection.cursor() as cursor:
        cursor.execute(
            _UPSERT.format(table=table),
            [scope, start, start + 2 * period, scope, start - period],
        )
        hits, previous = cursor.fetchone()
    return judge(hits=hits, previous=previous or 0, elapsed=now - start, limit=limit)


def judge(*, hits: int, previous: int, elapsed: float, limit: Limit) -> Verdict:
    """Whether the ``hits``-th request of this window (``elapsed`` seconds into it) passes.

    The estimate is ``hits + previous × (1 − elapsed / period)``. When refused,
    ``retry_after`` is when one more request would pass if none were made meanwhile.
    """
    period, allowed = limit.seconds, limit.count
    weight = 1 - elapsed / period
    if hits + previous * weight <= allowed:
        return Verdict(allowed=True, retry_after=0, first_refusal=False)
    first_refusal = (hits - 1) + previous * weight <= allowed
    # One more request in this window passes once the previous window's weight is low
    # enough; otherwise wait for the next window, where this one's hits weigh instead.
    wait: float | None = None
    if hits + 1 <= allowed:
        at = period * (1 - (allowed - hits - 1) / previous)  # previous > 0 here
        if at < period:
            wait = at - elapsed
    if wait is None:
        at_next = period * (1 - (allowed - 1) / hits) if hits > allowed - 1 else 0.0
        wait = (period - elapsed) + at_next
    return Verdict(
        allowed=False, retry_after=max(1, math.ceil(wait - 1e-9)), first_refusal=first_refusal
    )


def prune_rate_limit_buckets() -> int:
    """Delete buckets that no longer count (one statement). Returns how many."""
    deleted, _ = RateLimitBucket.objects.filter(
        expires_at__lt=int(clock.now().timestamp())
    ).delete()
    return deleted


# --- Which limits a request counts against ----------------------------------------------

_WORKFLOW_POSTS = (
    re.compile(r"/api/v\d+/(?:merge|deletion)-requests(?:/preview)?/?"),
    re.compile(r"/sub-accounts/\d+/request-(?:merge|deletion)/?"),
)
_EXPORT_ENDINGS = ("/csv", "/pdf", ".csv", ".pdf")


def costly_limits(method: str, path: str) -> list[str]:
    """The lower limits a request to ``path`` counts against besides the general one."""
    names = []
    if method == "POST" and any(p.fullmatch(path) for p in _WORKFLOW_POSTS):
        names.append("workflow")
    if path.rstrip("/").lower().endswith(_EXPORT_ENDINGS):
        names.append("export")
    return names


def _keyed_hash(value: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _bearer_client(request: HttpRequest) -> tuple[str, str] | None:
    """(client, label for the security log) of a bearer key, or None without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    from portal.accounts.models import hash_api_key

    parts = token.split("_")
    public = parts[1][:16] if len(parts) >= 3 and parts[0] == "rpp" else "?"
    return f"key:{hash_api_key(token)}", f"key:{public}"


def _email_bucket(email: str) -> str:
    # As the reset form compares emails: look-alikes and case share one bucket.
    return _keyed_hash(unicodedata.normalize("NFKC", email.strip()).casefold())


def request_scopes(request: HttpRequest) -> list[tuple[str, str, str]]:
    """(limit name, client, label) for every limit ``request`` counts against."""
    path = request.path_info
    scopes: list[tuple[str, str, str]] = []
    client: tuple[str, str] | None = None
    general = "api"
    if path.startswith("/api/"):
        client = _bearer_client(request)
    else:
        general = "page"
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            client = (f"user:{user.pk}", "")
    if client is not None:
        for name in [general, *costly_limits(request.method or "", path)]:
            scopes.append((name, *client))
    if request.method == "POST" and request.path == reverse("accounts:password_reset"):
        ip = client_ip(request)
        if ip:
            scopes.append(("password_reset_ip", _keyed_hash(ip), f"ip:{ip}"))
        email = request.POST.get("email", "")
        if isinstance(email, str) and email.strip():
            scopes.append(("password_reset_email", _email_bucket(email), ""))
    return scopes


# --- Middleware ----------------------------------------------------------------------


def _page(status: int, title: str, message: str) -> HttpResponse:
    body = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>"
        f"<body><main><h1>{escape(title)}</h1><p>{escape(message)}</p></main></body></html>\n"
    )
    return HttpResponse(body, status=status, content_type="text/html; charset=utf-8")


class RateLimitMiddleware:
    """Answer 429 with ``Retry-After`` once a client is over one of its limits.

    Goes after the authentication and session middleware (it limits pages per
    logged-in user) and before the idempotency middleware (a refusal is not stored).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        configured_limits()  # a bad setting stops the server at start, not mid-request

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not getattr(settings, "RATE_LIMITS_ENABLED", True):
            return self.get_response(request)
        limits = configured_limits()
        refusals: list[tuple[str, Limit, Verdict, str]] = []
        for name, client, label in request_scopes(request):
            limit = limits[name]
            if limit is None:
                continue
            try:
                verdict = hit(f"{name}:{client}"[:100], limit)
            except DatabaseError:
                logger.exception("Could not count a request against rate limit %s", name)
                continue
            if not verdict.allowed:
                refusals.append((name, limit, verdict, label))
        if refusals:
            return self._refuse(request, refusals)
        return self.get_response(request)

    def _refuse(
        self, request: HttpRequest, refusals: Iterable[tuple[str, Limit, Verdict, str]]
    ) -> HttpResponse:
        refusals = list(refusals)
        name, limit, _, _ = max(refusals, key=lambda r: r[2].retry_after)
        retry_after = max(r[2].retry_after for r in refusals)
        for refused, refused_limit, verdict, label in refusals:
            if verdict.first_refusal:
                from portal.accounts.security import refusal_note

                refusal_note(
                    action=RATE_LIMITED,
                    reason=(
                        f"Rate limit {refused} reached: {refused_limit.count} per "
                        f"{refused_limit.seconds} s."
                    ),
                    actor_label=label,
                )
        seconds = f"{retry_after} second{'s' if retry_after != 1 else ''}"
        message = (
            f"Too many {_DESCRIPTIONS[name]}: at most {limit.count} per "
            f"{_per(limit.seconds)}. Try again in {seconds}."
        )
        if is_api(request):
            response: HttpResponse = JsonResponse({"detail": message}, status=429)
        else:
            response = _page(429, "Too many requests", message)
        response["Retry-After"] = str(retry_after)
        return response


def _per(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds} seconds"


def max_body_size(request: HttpRequest) -> int | None:
    """The largest body ``request`` may carry, or None when unlimited."""
    if request.content_type == "multipart/form-data":
        return getattr(settings, "PORTAL_MAX_UPLOAD_SIZE", 32 * 1024 * 1024)
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class RequestBodyLimitMiddleware:
    """Answer 413 to a body over the limit, before anything reads it.

    Goes early (right after the request-id middleware): nothing before it reads the
    body. Django itself would answer 400 (``RequestDataTooBig``); a view that still
    runs into that (a multipart form's fields over ``DATA_UPLOAD_MAX_MEMORY_SIZE``)
    gets 413 as well.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = max_body_size(request)
        if limit is not None:
            if (
                content_length(request) is None
                and _is_chunked(request)
                and not _buffer_chunked_body(request, limit)
            ):
                return self._too_large(request, limit)
            length = content_length(request)
            if length is not None and length > limit:
                return self._too_large(request, limit)
            if (
                request.method == "POST"
                and request.content_type == "multipart/form-data"
                and not is_api(request)
            ):
                # The CSRF check reads a page's form before any view: parse it here, where
                # fields over DATA_UPLOAD_MAX_MEMORY_SIZE can still become a 413. Never for
                # the API, which reads request.body (JsonBodyMiddleware refuses a form there).
                try:
                    request.POST  # noqa: B018
                except RequestDataTooBig:
                    return self._too_large(request, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RequestDataTooBig):
            return self._too_large(request, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        return None

    @staticmethod
    def _too_large(request: HttpRequest, limit: int | None) -> HttpResponse:
        size = f"{limit:,} bytes" if limit is not None else "the limit"
        message = f"The request body is too large: at most {size}."
        if is_api(request):
            return JsonResponse({"detail": message}, status=413)
        return _page(413, "Request too large", message)


def _is_chunked(request: HttpRequest) -> bool:
    encoding = request.META.get("HTTP_TRANSFER_ENCODING", "")
    # The server marks a body it ends itself (gunicorn does for chunked requests);
    # only then is reading to the end of wsgi.input safe.
    return "chunked" in encoding.lower() and bool(request.META.get("wsgi.input_terminated"))


def _buffer_chunked_body(request: HttpRequest, limit: int) -> bool:
    """Read a chunked body (up to ``limit`` + 1 bytes) so Django sees it. False if too big."""
    stream = request.META.get("wsgi.input")
    if stream is None:
        return True
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        return False
    body = b"".join(chunks)
    request.META["CONTENT_LENGTH"] = str(len(body))
    # WSGIRequest read a zero-length body from the missing Content-Length; hand it
    # the real one instead (Django reads request._stream for body, POST and FILES).
    request._stream = LimitedStream(io.BytesIO(body), len(body))  # type: ignore[attr-defined]
    return True
