"""The REST API at /api/v1: mounts each app's router and maps errors once."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, IntegrityError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from portal.accounts.auth import ApiKeyAuth
from portal.analytics.api import router as analytics_router
from portal.audit.api import router as audit_router
from portal.billing.api import router as billing_router
from portal.core.errors import DomainError
from portal.lines.api import router as lines_router
from portal.partners.api import router as partners_router
from portal.workflows.api import router as workflows_router

logger = logging.getLogger("portal.api")

api = NinjaAPI(
    title="Reseller Partner Portal API",
    version="1",
    description=(
        "Organise messaging lines into sub-accounts. Authenticate with "
        "`Authorization: Bearer <key>`; staff keys may add `partner=<slug>`. "
        "POST accepts an `Idempotency-Key` header."
    ),
    auth=ApiKeyAuth(),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)

api.add_router("", partners_router)
api.add_router("", lines_router)
api.add_router("", audit_router)
api.add_router("", billing_router)
api.add_router("", analytics_router)
api.add_router("", workflows_router)


@api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.detail}, status=exc.status_code)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request, {"detail": "Missing, unknown or revoked API key."}, status=401
    )


# An error's ``loc`` names the field; a client-made key (a megabyte-long unknown
# field) is cut to this many characters so the 422 never echoes it whole.
_LOC_PART_CHARS = 64


def _short_loc(error: dict[str, Any]) -> dict[str, Any]:
    loc = error.get("loc")
    if not isinstance(loc, list | tuple):
        return error
    parts = [p[:_LOC_PART_CHARS] if isinstance(p, str) else p for p in loc]
    return {**error, "loc": parts}


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [_short_loc(e) if isinstance(e, dict) else e for e in exc.errors]
    return api.create_response(request, {"detail": errors}, status=422)


@csrf_exempt  # as the API's own views: a POST to a wrong path is a 404, not a CSRF 403
def api_not_found(request: HttpRequest) -> HttpResponse:
    """Any /api/v1/ path no route matches: JSON like every other API answer."""
    return JsonResponse({"detail": "Not found."}, status=404)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)


# PostgreSQL: serialisation failure, deadlock detected, lock not available.
_RACE_SQLSTATES = {"40001", "40P01", "55P03"}


def _is_lost_race(exc: DatabaseError) -> bool:
    """A unique key taken meanwhile or a lock the database gave up on, not any failure.

    Other operational errors (a lost connection, an overflowing value) are server
    errors and must not be dressed up as "retry".
    """
    if isinstance(exc, IntegrityError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if getattr(exc.__cause__, "sqlstate", None) in _RACE_SQLSTATES:
        return True
    message = str(exc).lower()
    return "database is locked" in message or "database table is locked" in message


@api.exception_handler(DatabaseError)
def _database_error(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    """Lost races (lock waits, deadlocks, serialisation, unique keys) are conflicts."""
    if _is_lost_race(exc):
        logger.warning("Concurrent change refused: %s", exc)
        return api.create_response(
            request,
            {"detail": "Another change to the same objects happened at the same time; retry."},
            status=409,
        )
    raise exc
