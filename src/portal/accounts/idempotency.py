"""``Idempotency-Key`` for POST requests to the API (domain §6).

The same key with the same request replays the first response; with a different
request it is refused (422); while the first is still running a duplicate gets 409.
Requests are the same when path, query string and body are, bodies compared as JSON
values: key order, spacing and escapes do not make a body different (one that is not
JSON, refused later anyway, is compared as bytes). Records are scoped to the
credential that sent them and kept at least 24 h (:data:`RETENTION`). A first request
that never finished (its process was killed) holds the key for
:data:`IN_FLIGHT_TIMEOUT` at most; then a retry runs it again.
Server errors (5xx), 401 and 429 are not stored: the same key may be retried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from portal.accounts.models import IdempotencyRecord
from portal.accounts.services import api_key_authenticate
from portal.core import clock

logger = logging.getLogger("portal.accounts")

HEADER = "Idempotency-Key"
_NOT_STORED = {401, 429}

# Clients may retry for a day (domain §6); records are kept twice that long.
MIN_RETENTION = dt.timedelta(hours=24)
RETENTION = 2 * MIN_RETENTION
# Far longer than any request may run (the web server's worker timeout is 60 s): a
# record still in flight after this belongs to a request whose process died.
IN_FLIGHT_TIMEOUT = dt.timedelta(minutes=10)


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _live_key(authorization: str) -> bool:
    """Whether the header carries a key that authenticates now."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return api_key_authenticate(token.strip()) is not None


def canonical_body(body: bytes) -> bytes:
    """``body`` as its JSON value written one way (sorted keys, no spaces), so that two
    bodies differing only in key order, spacing or escapes compare equal. A body that is
    not JSON (or too deeply nested to read) stays as it is: it cannot equal canonical JSON.
    """
    if not body:
        return body
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        return body


def _fingerprints(request: HttpRequest) -> tuple[str, str]:
    """(fingerprint of path, query string and canonical body; the same over the raw body).

    Only the first is stored. The second matches records written before bodies were
    compared as JSON values, which hashed the raw bytes; identical bytes are the same
    request either way. Records live 48 h, so after that it never matches anything.
    """
    head = [request.path.encode(), request.META.get("QUERY_STRING", "").encode()]
    body = request.body
    canonical, raw = (
        hashlib.sha256(b"\0".join([*head, value])).hexdigest()
        for value in (canonical_body(body), body)
    )
    return canonical, raw


class IdempotencyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        key = request.headers.get(HEADER)
        auth = request.headers.get("Authorization", "")
        if request.method != "POST" or key is None or not request.path.startswith("/api/"):
            return self.get_response(request)
        if not _live_key(auth):
            # 401 follows; nothing to remember, and a revoked key replays nothing.
            return self.get_response(request)
        if not 1 <= len(key) <= 255 or not key.isprintable():
            return _error(400, f"{HEADER} must be 1 to 255 printable characters.")
        scope = hashlib.sha256(auth.encode()).hexdigest()
        fingerprint, raw_fingerprint = _fingerprints(request)
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    scope=scope, key=key, fingerprint=fingerprint
                )
        except IntegrityError:
            answer = self._replay(scope, key, {fingerprint, raw_fingerprint})
            if isinstance(answer, HttpResponse):
                return answer
            record = answer
        try:
            response = self.get_response(request)
        except BaseException:
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
            raise
        if (
            response.status_code >= 500
            or response.status_code in _NOT_STORED
            or getattr(response, "streaming", False)
        ):
            IdempotencyRecord.objects.filter(pk=record.pk).delete()
        else:
            IdempotencyRecord.objects.filter(pk=record.pk).update(
                response_status=response.status_code,
                response_body=bytes(response.content),
                response_content_type=response.get("Content-Type", "application/json"),
            )
        return response

    def _replay(
        self, scope: str, key: str, fingerprints: set[str]
    ) -> HttpResponse | IdempotencyRecord:
        """The answer for a key already claimed, or the record when this request takes over."""
        record = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
        if record is None:  # the first request failed and released the key meanwhile
            return _error(409, "A request with this Idempotency-Key just failed; retry it.")
        if record.fingerprint not in fingerprints:
            return _error(
                422, f"This {HEADER} was already used with a different request body or path."
            )
        if record.response_status is None:
            if record.created_at < clock.now() - IN_FLIGHT_TIMEOUT and self._take_over(record):
                return record
            return _error(409, f"A request with this {HEADER} is still in progress.")
        response = HttpResponse(
            bytes(record.response_body),
            status=record.response_status,
            content_type=record.response_content_type,
        )
        response["Idempotent-Replayed"] = "true"
        return response

    @staticmethod
    def _take_over(record: IdempotencyRecord) -> bool:
        """Claim an abandoned in-flight record; only one of several retries wins."""
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, response_status__isnull=True, created_at=record.created_at
        ).update(created_at=clock.now())
        if taken:
            logger.warning(
                "Idempotency-Key %r: the first request never finished; running the retry",
                record.key,
            )
        return bool(taken)


def prune_idempotency_records(*, older_than: dt.timedelta = RETENTION) -> int:
    """Delete records older than ``older_than`` (one statement). Returns how many.

    Bookkeeping of the API, not partner data: no audit event.
    """
    if older_than < MIN_RETENTION:
        raise ValueError(f"Idempotency records are kept at least {MIN_RETENTION}.")
    cutoff = clock.now() - older_than
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    if deleted:
        logger.info("Pruned %d idempotency records older than %s", deleted, cutoff.isoformat())
    return deleted
