"""``portal demo``: the whole portal on this machine, with demo data, in one command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from portal.core.commands import add_listen_arguments
from portal.demo.seed import DEMO_PASSWORD, demo_is_seeded, demo_logins, seed_demo
from portal.partners.models import Partner

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class Command(BaseCommand):
    help = (
        "Run the portal as a demo: migrate the database (an SQLite file under var/ unless "
        "DATABASE_URL says otherwise), collect static files, add demo data when the "
        "database has no partner yet, then run the web server and the worker until Ctrl-C. "
        "Prints the URL and the demo logins."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_listen_arguments(parser)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        try:
            self._run(host, port)
        except KeyboardInterrupt:  # Ctrl-C while preparing: the seed is one transaction
            self.stderr.write("Interrupted.")
            sys.exit(130)

    def _run(self, host: str, port: int) -> None:
        _ensure_port_free(host, port)
        self.stdout.write("Preparing the database and static files…")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        api_key = None
        if Partner.objects.exists():
            self.stdout.write("The database already has partners: no demo data added.")
        else:
            api_key = seed_demo(stdout=self.stdout).api_key
        seeded = demo_is_seeded()
        connections.close_all()  # the children open their own

        stop = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: stop.set())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        children: dict[str, subprocess.Popen[bytes]] = {}
        try:
            children["web server"] = _spawn("serve", "--host", host, "--port", str(port))
            children["worker"] = _spawn("worker")
            url = f"http://{_visible_host(host)}:{port}/"
            ready = _wait_until_ready(url + "healthz", children, stop)
            if not ready and not stop.is_set():
                self._raise_if_exited(children)
                self.stderr.write(f"The web server did not answer within {READY_TIMEOUT:.0f} s.")
            if not stop.is_set():
                self._banner(url, seeded=seeded, api_key=api_key)
            while not stop.wait(0.5):
                self._raise_if_exited(children)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            _stop_all(children)
        self.stdout.write("Demo stopped.")

    def _raise_if_exited(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        for name, child in children.items():
            code = child.poll()
            if code is not None:
                raise CommandError(f"The {name} stopped unexpectedly (exit code {code}).")

    def _banner(self, url: str, *, seeded: bool, api_key: str | None) -> None:
        lines = [
            "",
            f"The demo portal is running at {url}",
            f"API docs: {url}api/v1/docs",
        ]
        if seeded:
            lines += ["", f"Demo logins (every password is {DEMO_PASSWORD}, for this demo only):"]
            lines += [
                f"  {email} / {DEMO_PASSWORD}  ({_who(email, role)})"
                for email, role in demo_logins()
            ]
        if api_key:
            lines += ["", f"API key of Demo Reseller's admin (shown once): {api_key}"]
        lines += ["", "Press Ctrl-C to stop.", ""]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()


def _who(email: str, role: str) -> str:
    if role == "staff":
        return "provider staff: every partner, approvals, /admin/"
    partner = "Northwind Messaging" if email.endswith("@northwind.example") else "Demo Reseller"
    if role == "client":
        return f"{partner}'s client: two sub-accounts, their lines, analytics and statements"
    return f"{partner}, {role}"


def _visible_host(host: str) -> str:
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - only for showing a URL
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _ensure_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"Cannot listen on {host}:{port} ({exc.strerror}); choose another with --port."
            ) from None


def _spawn(*command: str) -> subprocess.Popen[bytes]:
    """Run ``portal <command>`` with this interpreter, in its own session so that
    Ctrl-C reaches only us and we stop the children in order."""
    env = {**os.environ, "PORTAL_VAR_DIR": str(settings.VAR_DIR)}
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "portal.cli", *command], env=env, start_new_session=True
    )


def _wait_until_ready(
    url: str, children: dict[str, subprocess.Popen[bytes]], stop: threading.Event
) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and not stop.is_set():
        if any(child.poll() is not None for child in children.values()):
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        stop.wait(0.3)
    return False


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child (each stops gracefully), then SIGKILL what still runs."""
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
