"""Per-request facts (request id, client IP) that audit events record.

Middleware sets them for web and API requests; commands and tasks leave them
empty, so their events carry no request id.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str = ""
    ip: str | None = None


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "portal_request_context", default=RequestContext()
)


def current() -> RequestContext:
    return _current.get()


@contextmanager
def request_context(*, request_id: str | None = None, ip: str | None = None) -> Iterator[None]:
    token = _current.set(RequestContext(request_id=request_id or uuid.uuid4().hex, ip=ip))
    try:
        yield
    finally:
        _current.reset(token)
