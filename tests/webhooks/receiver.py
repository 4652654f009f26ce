"""A real HTTP receiver on 127.0.0.1 for webhook tests: no mocked HTTP client.

It runs a threading HTTP/1.1 server in a thread, records every request it gets (path,
headers, body) and answers as its ``answer`` function says: a status, a body, and an
optional delay before answering (a slow endpoint) or ``hang`` (never answers until
the receiver closes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def verify(self, secret: str) -> Any:
        """The payload, once the Standard Webhooks package verifies the signature."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


Answerer = Callable[[int, Received], Answer]


class Receiver:
    def __init__(self, answer: Answerer | None = None) -> None:
        self.answer: Answerer = answer or (lambda n, r: Answer())
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                got = Received(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
                with outer.lock:
                    outer.received.append(got)
                    index = len(outer.received) - 1
                answer = outer.answer(index, got)
                if answer.hang:
                    outer.closing.wait(120)
                    return
                if answer.delay:
                    outer.closing.wait(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} requests, got {self.count()}")
            time.sleep(0.01)
        with self.lock:
            return list(self.received)
