"""Helpers shared by the ``portal`` management commands."""

from __future__ import annotations

import os
import secrets
from argparse import ArgumentTypeError
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandError

from portal.core.errors import DomainError
from portal.core.principal import Principal


def cli_principal(command: str) -> Principal:
    """The acting principal of a command: the system, named after the command."""
    return Principal.system(f"cli:{command}")


def _message(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        return "; ".join(f"{key}: {value}" for key, value in detail.items())
    if isinstance(detail, list | tuple):
        return "; ".join(map(str, detail))
    return str(detail)


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn a refused operation into a :class:`CommandError` (exit 1, no traceback)."""
    try:
        yield
    except DomainError as exc:
        raise CommandError(_message(exc.detail)) from None


def generate_password() -> str:
    """A strong random password (about 128 bits), for accounts created without one."""
    return secrets.token_urlsafe(16)


def plural(count: int, noun: str) -> str:
    """``1 line``, ``2 lines``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def tcp_port(value: str) -> int:
    """argparse type for a TCP port number."""
    try:
        port = int(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ArgumentTypeError(f"{port} is not between 1 and 65535")
    return port


def money(amount: Decimal) -> str:
    """At least two decimals, more only when they matter: ``50.00``, ``12.3456``."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents if cents == amount else amount.normalize():f}"


def add_listen_arguments(parser: Any) -> None:
    """``--host`` and ``--port``, shared by ``serve`` and ``demo``."""
    parser.add_argument(
        "--host",
        default=os.environ.get("PORTAL_HOST", "127.0.0.1"),
        help="Address to listen on (default: PORTAL_HOST or 127.0.0.1).",
    )
    parser.add_argument(
        "--port",
        type=tcp_port,
        default=os.environ.get("PORTAL_PORT", "8000"),
        help="TCP port (default: PORTAL_PORT or 8000).",
    )
