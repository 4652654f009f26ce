"""One HTTP attempt of a delivery: resolve, check, connect to the checked address, POST.

No database here: the dispatcher hands an :class:`Outgoing` to a thread, which returns
an :class:`Outcome` for the dispatcher to record.

The host is resolved and its addresses checked (``portal.webhooks.addresses``) at every
attempt, and the connection is made to one of those checked addresses, never to the
name, while the request still says the name: in ``Host`` and, for https, in the TLS
handshake's SNI, whose certificate is verified against it. Nothing is looked up twice,
so a DNS answer that changes between the check and the connection (rebinding) cannot
steer the request inside. Redirects are answers like any other (not 2xx: a failure),
never followed. An attempt gets ``WEBHOOK_TIMEOUT_SECONDS`` (10 s) to connect and as
long to answer; only the first 1,000 characters of an answer are kept.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from portal.core import clock
from portal.webhooks.addresses import AddressRefused, resolve
from portal.webhooks.signing import headers_for

EXCERPT = 1000
# An answer longer than this (or of unknown length) is not read to its end: the
# connection is closed instead of kept for the next request.
KEEP_ALIVE_BODY = 64 * 1024
USER_AGENT = "ResellerPortal-Webhooks/1"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What one attempt sends (read from the database by the dispatcher)."""

    delivery_id: int
    endpoint_id: int
    url: str
    secrets: Sequence[str]  # newest first: the secret, then a rotated one still signing
    msg_id: str
    body: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got: a status code, or none and an error."""

    delivery_id: int
    endpoint_id: int
    at: dt.datetime
    status_code: int | None
    duration_ms: int
    error: str = ""
    response: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return "".join(c if c.isprintable() or c in "\n\t" else "�" for c in text)[:EXCERPT]


class Sender:
    """Sends attempts; thread-safe, keeps connections alive per checked address and host."""

    def __init__(self, *, timeout: float | None = None, per_host: int = 4) -> None:
        self.timeout = settings.WEBHOOK_TIMEOUT_SECONDS if timeout is None else timeout
        self.manager = urllib3.PoolManager(
            num_pools=256, maxsize=per_host, block=False, retries=False
        )

    def send(self, outgoing: Outgoing) -> Outcome:
        at = clock.now()
        started = time.monotonic()
        status: int | None = None
        error = response = ""
        try:
            status, response = self._post(outgoing, at, started)
        except AddressRefused as exc:
            error = str(exc)
        except NewConnectionError as exc:  # before its base class, ConnectTimeoutError
            error = f"Could not connect: {exc}"
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError):
            error = f"No answer within {self.timeout:g} s."
        except SSLError as exc:
            error = f"TLS error: {exc}"
        except (HTTPError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration = int((time.monotonic() - started) * 1000)
        return Outcome(
            delivery_id=outgoing.delivery_id,
            endpoint_id=outgoing.endpoint_id,
            at=at,
            status_code=status,
            duration_ms=duration,
            error=error[:300],
            response=response,
        )

    def _post(self, outgoing: Outgoing, at: dt.datetime, started: float) -> tuple[int, str]:
        target, addresses = resolve(outgoing.url)
        body = outgoing.body.encode()
        headers = {
            **headers_for(outgoing.secrets, outgoing.msg_id, at, outgoing.body),
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        named = str(addresses[0]) != target.host and ":" not in target.host
        pool_kwargs = (
            {"server_hostname": target.host, "assert_hostname": target.host}
            if target.scheme == "https" and named
            else {}
        )
        last_error: Exception | None = None
        for address in addresses:  # the next checked address when one cannot be reached
            remaining = self.timeout - (time.monotonic() - started)
            if remaining <= 0:
                break
            pool = self.manager.connection_from_host(
                str(address), target.port, target.scheme, pool_kwargs=pool_kwargs
            )
            try:
                answer = pool.urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers=headers,
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=remaining, read=self.timeout),
                )
            except (NewConnectionError, ConnectTimeoutError) as exc:
                last_error = exc
                continue
            try:
                length = answer.headers.get("content-length", "")
                if length.isdigit() and int(length) <= KEEP_ALIVE_BODY:
                    data = answer.read()
                    answer.release_conn()
                else:
                    data = answer.read(EXCERPT * 4)
                    answer.close()
            except Exception:
                answer.close()
                raise
            return answer.status, _printable(data)
        if last_error is not None:
            raise last_error
        raise TimeoutError

    def close(self) -> None:
        self.manager.clear()
