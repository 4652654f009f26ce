"""The REST API at /api/v1: mounts each app's router, maps errors once, and describes both.

The OpenAPI document is ninja's, finished here for the clients generated from it:
operations are named by their view function (``create_sub_account``), tagged by the
resource their path names, and declare every error status they can answer with the
``ErrorOut`` body (:func:`error_statuses`).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import REF_TEMPLATE, OpenAPISchema
from ninja.operation import Operation
from ninja.schema import NinjaGenerateJsonSchema

from portal.accounts.auth import ApiKeyAuth
from portal.alerts.api import router as alerts_router
from portal.analytics.api import router as analytics_router
from portal.audit.api import router as audit_router
from portal.billing.api import router as billing_router
from portal.billing.statement_api import router as statements_router
from portal.core.api import ErrorOut
from portal.core.errors import DomainError
from portal.core.retry import is_conflict
from portal.lines.api import router as lines_router
from portal.notifications.api import router as notifications_router
from portal.partners.api import router as partners_router
from portal.webhooks.api import router as webhooks_router
from portal.workflows.api import router as workflows_router

logger = logging.getLogger("portal.api")

# An operation's tag (how generated clients and the docs group operations) is the
# resource its path names (resource_tag).
RESOURCE_TAGS = {
    "partner": "Partner",
    "sub-accounts": "Sub-accounts",
    "lines": "Lines",
    "line-orders": "Line orders",
    "audit-events": "Audit events",
    "billing": "Billing",
    "invoices": "Invoices",
    "discounts": "Discounts",
    "credits": "Credits",
    "statements": "Statements",
    "analytics": "Analytics",
    "alert-rules": "Alert rules",
    "alerts": "Alerts",
    "message-events": "Message events",
    "merge-requests": "Merge requests",
    "deletion-requests": "Deletion requests",
    "webhook-endpoints": "Webhooks",
    "webhook-deliveries": "Webhooks",
    "notifications": "Notifications",
}

# Why an operation may answer each error status (domain §6), as the document says it.
ERROR_DESCRIPTIONS = {
    400: "Bad request: an unknown filter value, a staff key naming no partner where one is "
    "needed, a body that is not valid JSON, or (POST) a malformed Idempotency-Key.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's role may not do this.",
    404: "Not found: missing, or another partner's (the two answer alike), or a `partner` "
    "(staff) that names none.",
    409: "The object's state does not allow this, another change to it happened at the same "
    "time (retry), or (POST) a request with this Idempotency-Key is still in progress.",
    413: "The request body is too large.",
    415: "The request body is not JSON: send it with `Content-Type: application/json`.",
    422: "Invalid fields or parameters (`detail` lists each with its `loc`, or says which), "
    "or (POST) an Idempotency-Key already used with another body.",
    429: "Too many requests: retry after the `Retry-After` seconds.",
}
_WRITES = {"post", "put", "patch", "delete"}


def error_statuses(method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation of the document can answer, from what it declares.

    Every authenticated operation: 400 (a staff key naming no partner), 401, 403, 404
    (any id, or the staff ``partner``), 429. With parameters or a body: 422. A write:
    409 (state, a lost race, an Idempotency-Key in flight), 413 and 415 (whatever body it
    is sent, even one it does not take), 400 and 422 (bad JSON, Idempotency-Key reuse).
    """
    statuses = {400, 401, 403, 404, 429} if operation.get("security") else {400, 404}
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if method in _WRITES:
        statuses |= {400, 409, 413, 415, 422}
    return sorted(statuses)


def resource_tag(path: str) -> str:
    """The resource a path (below the API root) names: its first segment, or a collection
    nested under an object (``/sub-accounts/{id}/analytics`` is Analytics)."""
    parts = [part for part in path.split("/") if part]
    if not parts:
        return "API"
    resource = parts[0]
    for before, part in itertools.pairwise(parts):
        if before.startswith("{") and part in RESOURCE_TAGS:
            resource = part
    return RESOURCE_TAGS.get(resource) or resource.replace("-", " ").capitalize()


def _error_response(status: int, error_ref: dict[str, str]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": error_ref}},
    }
    if status == 429:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds until a request would be allowed again.",
                "schema": {"type": "integer"},
            }
        }
    return response


class PortalAPI(NinjaAPI):
    """ninja's API with the OpenAPI document finished for generated clients."""

    def get_openapi_operation_id(self, operation: Operation) -> str:
        # The view's own name: short and stable (no module path), unique across the
        # apps (tests/test_openapi.py checks).
        return operation.view_func.__name__

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        document = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        error_schema = ErrorOut.model_json_schema(
            ref_template=REF_TEMPLATE,
            schema_generator=NinjaGenerateJsonSchema,
            mode="serialization",
        )
        schemas = document["components"]["schemas"]
        schemas.update(error_schema.pop("$defs", {}))
        schemas[ErrorOut.__name__] = error_schema
        error_ref = {"$ref": REF_TEMPLATE.format(model=ErrorOut.__name__)}
        root = "/" + document.path_prefix.strip("/")
        for path, methods in document["paths"].items():
            for method in list(methods):
                # ninja shares one dict between the methods of a multi-method operation.
                operation = methods[method] = dict(methods[method])
                operation["tags"] = [resource_tag(path.removeprefix(root))]
                # ninja's own 200 is an int key, one from openapi_extra a string: both
                # would be written as "200" in one JSON object.
                responses: dict[str, Any] = {}
                for status, response in operation["responses"].items():
                    responses[str(status)] = {**responses.get(str(status), {}), **response}
                for status in error_statuses(method, operation):
                    responses.setdefault(str(status), _error_response(status, error_ref))
                operation["responses"] = responses
        return document


api = PortalAPI(
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
api.add_router("", statements_router)
api.add_router("", analytics_router)
api.add_router("", alerts_router)
api.add_router("", workflows_router)
api.add_router("", webhooks_router)
api.add_router("", notifications_router)


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


@api.exception_handler(DatabaseError)
def _database_error(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    """Lost races (lock waits, deadlocks, serialisation, unique keys) are conflicts."""
    if is_conflict(exc):
        logger.warning("Concurrent change refused: %s", exc)
        return api.create_response(
            request,
            {"detail": "Another change to the same objects happened at the same time; retry."},
            status=409,
        )
    raise exc
