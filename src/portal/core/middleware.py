"""Middleware that gives every request an id and remembers the client's address."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

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
