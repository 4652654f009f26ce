"""``portal serve``: the production web server (gunicorn; whitenoise serves static files)."""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from gunicorn.app.base import BaseApplication

from portal.core.commands import add_listen_arguments
from portal.core.memory import limit_malloc_arenas


class PortalServer(BaseApplication):
    """gunicorn run from Python with our settings instead of a config file."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # older gunicorns lack some settings
                self.cfg.set(key, value)

    def load(self) -> Any:
        from portal.wsgi import application

        return application


def _limit_arenas(server: Any, worker: Any) -> None:
    limit_malloc_arenas()


class Command(BaseCommand):
    help = (
        "Run the portal's production web server: gunicorn with threaded workers, static "
        "files served by whitenoise (collected first when never collected). Put it behind "
        "a TLS-terminating proxy. Defaults come from PORTAL_HOST, PORTAL_PORT and "
        "PORTAL_WEB_WORKERS when set."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_listen_arguments(parser)
        parser.add_argument(
            "--workers",
            type=int,
            default=os.environ.get("PORTAL_WEB_WORKERS", "2"),
            metavar="N",
            help="Web worker processes, 4 threads each (default: PORTAL_WEB_WORKERS or 2).",
        )

    def handle(self, *args: Any, host: str, port: int, workers: int, **options: Any) -> None:
        if not 1 <= workers <= 64:
            raise CommandError("--workers must be between 1 and 64.")
        self._warn_unapplied_migrations()
        if not (settings.STATIC_ROOT / "staticfiles.json").exists():
            self.stdout.write("Collecting static files (first start)…")
            call_command("collectstatic", interactive=False, verbosity=0)
        # Workers are forked from this process: they must not share its connections.
        connections.close_all()
        shown_host = f"[{host}]" if ":" in host else host
        self.stdout.write(f"Serving the portal on http://{shown_host}:{port}/")
        self.stdout.flush()
        PortalServer(
            {
                "bind": f"{shown_host}:{port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": 4,
                "timeout": 60,
                "graceful_timeout": 20,
                "accesslog": "-",
                "errorlog": "-",
                "loglevel": "info",
                "proc_name": "portal",
                # One gunicorn per port, several per machine: no shared control socket.
                "control_socket_disable": True,
                # Each worker caps its malloc arenas before its threads start (docs/operations.md).
                "post_fork": _limit_arenas,
            }
        ).run()

    def _warn_unapplied_migrations(self) -> None:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            self.stderr.write(
                f"Warning: {len(plan)} database migrations are not applied; "
                "run `portal migrate` first."
            )
