"""Middleware: a request id and the client's address; API bodies are JSON or refused."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from portal.core.context import request_context

# Matched with fullmatch: "$" would also accept a trailing newline, which Django then
# refuses to echo in the X-Request-ID header (a 500).
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR when it is an IP address (the audit tables store it as one), else None."""
    value = request.META.get("REMOTE_ADDR") or ""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # A scoped IPv6 address ("fe80::1%eth0") is not something an inet column takes.
    return None if "%" in value else str(address)


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        ip = client_ip(request)
        with request_context(request_id=request_id, ip=ip):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


# Methods whose body an API operation may read.
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_JSON_SUFFIX = re.compile(r"application/[a-z0-9!#$&^_.-]+\+json")
_UTF8 = {"utf-8", "utf8"}


def is_json_content_type(request: HttpRequest) -> bool:
    """``application/json`` or ``application/<something>+json``, in UTF-8 if a charset is given."""
    media_type = (request.content_type or "").lower()
    if media_type != "application/json" and not _JSON_SUFFIX.fullmatch(media_type):
        return False
    charset = request.content_params.get("charset") if request.content_params else None
    return charset is None or charset.strip().strip('"').lower() in _UTF8


def is_api(request: HttpRequest) -> bool:
    """Whether ``request`` is for the REST API (JSON answers, bearer keys)."""
    return request.path_info.startswith("/api/")


def content_length(request: HttpRequest) -> int | None:
    """The declared body length; None when missing or not a number."""
    value = request.META.get("CONTENT_LENGTH")
    if value in (None, ""):
        return None
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return None


def _has_body(request: HttpRequest) -> bool:
    # Django reads no body without a valid Content-Length (a chunked body has been given
    # one by RequestBodyLimitMiddleware), so neither does this.
    return (content_length(request) or 0) > 0


class JsonBodyMiddleware:
    """Answer 415 to an API request whose body is not declared as JSON (domain §6).

    Runs before anything reads the body: a form or multipart body parsed into
    ``request.POST`` would leave ``request.body`` unreadable for the API, and a body
    of another type must not be taken for JSON because it happens to parse. An empty
    body passes whatever it claims to be (a POST that takes no body, sent by curl or
    a form library). Goes after the rate limiter, so refusals still count, and before
    the idempotency middleware, so a 415 never claims an ``Idempotency-Key``. It also
    comes before authentication: like 413, it judges the request's form, not its sender.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method in _BODY_METHODS
            and is_api(request)
            and _has_body(request)
            and not is_json_content_type(request)
        ):
            response = JsonResponse(
                {
                    "detail": "The request body must be JSON in UTF-8, sent with "
                    "Content-Type: application/json."
                },
                status=415,
            )
            if request.method in {"POST", "PATCH"}:
                response[f"Accept-{request.method.title()}"] = "application/json"
            return response
        return self.get_response(request)
