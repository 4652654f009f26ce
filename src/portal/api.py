"""The REST API at /api/v1: mounts each app's router and maps errors once."""

from __future__ import annotations

import logging

from django.db import DatabaseError, IntegrityError, OperationalError
from django.http import HttpRequest, HttpResponse
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


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return api.create_response(request, {"detail": exc.errors}, status=422)


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
