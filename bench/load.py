"""A real server and concurrent HTTP clients for the web bench.

:func:`serve` starts ``portal serve`` (gunicorn, threaded workers) on a free local port
with :mod:`bench.settings`, so the bench's bare baseline views are served by the same
workers as the portal. :func:`load` keeps ``clients`` keep-alive connections busy for
``seconds`` (closed loop: each client sends its next request when the previous answer
has been read) and returns every request's latency.
"""

from __future__ import annotations

import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class LoadResult:
    latencies_ms: list[float]
    errors: int
    seconds: float
    clients: int
    cpu_seconds: float = 0.0  # what ``cpu_probe`` counted during the run

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds * 1000 / max(1, self.requests)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, pct: float) -> float:
        return percentile(self.latencies_ms, pct)

    @classmethod
    def combine(cls, parts: list[LoadResult]) -> LoadResult:
        """Several runs with the same clients as one."""
        return cls(
            latencies_ms=[ms for part in parts for ms in part.latencies_ms],
            errors=sum(part.errors for part in parts),
            seconds=sum(part.seconds for part in parts),
            clients=parts[0].clients,
            cpu_seconds=sum(part.cpu_seconds for part in parts),
        )


def percentile(values: list[float], pct: float) -> float:
    """The ``pct``-th percentile (inclusive method); the value itself for one value."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(pct * 10) - 1]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes ``pids`` have used (Linux ``/proc``;
    0 elsewhere). Processes that have gone count nothing."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (gunicorn's workers), from ``/proc``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    port: int
    pid: int


@contextmanager
def serve(*, workers: int, log_path: Path) -> Iterator[Server]:
    """``portal serve`` on a free port for the duration of the block.

    The server inherits ``DATABASE_URL`` and ``PORTAL_VAR_DIR`` from this process; its
    access and error logs go to ``log_path``.
    """
    port = _free_port()
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    portal = Path(sys.executable).with_name("portal")
    command = [str(portal), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own console script)
            [*command, "--workers", str(workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        try:
            _wait_until_up(port, process, log_path)
            yield Server(port=port, pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"portal serve exited; see {log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"portal serve did not answer within 90 s; see {log_path}")


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One GET on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def load(
    *,
    port: int,
    path_for: Callable[[random.Random], str],
    headers: dict[str, str],
    seconds: float,
    clients: int = 16,
    seed: int = 1,
    cpu_probe: Callable[[], float] | None = None,
) -> LoadResult:
    """``clients`` threads, each with one keep-alive connection, requesting
    ``path_for(rng)`` back to back for ``seconds``. Non-200 answers count as errors
    (and their latency is kept: a fast error is no success). ``cpu_probe`` returns the
    CPU seconds used so far by the processes that serve (read before and after)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(k: int) -> None:
        rng = random.Random(seed * 1_000 + k)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, clock = latencies[k], time.perf_counter
        start.wait()
        while not stop.is_set():
            path = path_for(rng)
            t0 = clock()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status = 0
            mine.append((clock() - t0) * 1000)
            if status != 200:
                errors[k] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    cpu_before = cpu_probe() if cpu_probe else 0.0
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu = (cpu_probe() - cpu_before) if cpu_probe else 0.0
    return LoadResult(
        latencies_ms=[ms for mine in latencies for ms in mine],
        errors=sum(errors),
        seconds=elapsed,
        clients=clients,
        cpu_seconds=cpu,
    )
