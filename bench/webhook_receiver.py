"""A local webhook receiver for the bench, in a process of its own (not the bench's GIL).

``python -m bench.webhook_receiver`` listens on 127.0.0.1 (an ephemeral port, printed on
its first line), answers every ``POST`` with ``204`` at once over HTTP/1.1 keep-alive,
and answers ``GET /count`` with the number of POSTs it got and how many distinct
``webhook-id`` headers they carried.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_lock = threading.Lock()
_posts = 0
_ids: set[str] = set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        global _posts
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with _lock:
            _posts += 1
            _ids.add(self.headers.get("webhook-id", ""))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        with _lock:
            body = json.dumps({"posts": _posts, "ids": len(_ids)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
