"""Giving memory back to the operating system after large requests and tasks.

CPython frees the objects of a request (a 10,000-event batch parses into some 40 MB
of dicts and strings) as soon as the request ends, but glibc's allocator keeps the
freed pages in the arena that served them, and a threaded gunicorn worker has up to
8 × cores arenas (one per thread that allocated at the same time as another). A
process that has once handled a few batches at the same time keeps their high-water
mark for good, and the pages left between long-lived objects are never reused by a
request of another shape. Two knobs, both glibc only (elsewhere they do nothing):

- :func:`limit_malloc_arenas`: fewer arenas, so concurrent requests reuse each other's
  freed pages instead of each growing its own (``portal serve`` sets it in every web
  worker, ``portal worker`` in itself);
- :func:`release_free_memory`: ``malloc_trim(0)``, which returns the free pages of
  every arena (not only the top of the heap) to the kernel; called after a request
  with a large body or response (:class:`ReleaseMemoryMiddleware`) and after a task.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from portal.core.middleware import content_length

logger = logging.getLogger("portal.core.memory")

# glibc's mallopt parameter for the arena limit (malloc.h: M_ARENA_MAX = -8).
_M_ARENA_MAX = -8
# Arenas per process: two lets a request run while another thread frees, without one
# arena per thread (glibc's default is 8 per core).
DEFAULT_ARENAS = 2
# A request whose body or response is at least this large leaves enough freed memory
# behind to be worth a trim (a trim after a small request costs more than it returns).
# ``PORTAL_MEMORY_TRIM_BYTES`` overrides it; 0 turns the trim off.
LARGE_BYTES = 256 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    return libc


def limit_malloc_arenas(arenas: int | None = None) -> bool:
    """Cap glibc's malloc arenas for this process at ``arenas`` (default:
    ``MALLOC_ARENA_MAX`` from the environment, else :data:`DEFAULT_ARENAS`; 0 leaves
    glibc's default); True when applied. Call it before the process starts threads."""
    libc = _glibc()
    if arenas is None:
        arenas = int(os.environ.get("MALLOC_ARENA_MAX") or DEFAULT_ARENAS)
    if libc is None or arenas <= 0:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


_trim_lock = threading.Lock()


def release_free_memory() -> bool:
    """``malloc_trim(0)``: hand the allocator's free pages back to the kernel. True when
    something was released. One thread at a time (a trim walks every arena)."""
    libc = _glibc()
    if libc is None:
        return False
    if not _trim_lock.acquire(blocking=False):
        return False  # another thread is trimming the same arenas right now
    try:
        return bool(libc.malloc_trim(0))
    finally:
        _trim_lock.release()


class ReleaseMemoryMiddleware:
    """After a request with a large body (message-event batches, CSV uploads) or a large
    response (exports, PDFs), returns the freed memory to the kernel once the response
    has been sent and the request's objects are gone (a closer of the response)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.threshold = int(os.environ.get("PORTAL_MEMORY_TRIM_BYTES") or LARGE_BYTES)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.threshold and (
            (content_length(request) or 0) >= self.threshold
            or (not response.streaming and len(response.content) >= self.threshold)
        ):
            # Run by response.close(), which the server calls after sending the answer.
            response._resource_closers.append(release_free_memory)
        return response
