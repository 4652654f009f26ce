"""Running the real ``portal`` console script against the test database.

A subprocess only sees committed rows, so tests using these helpers need
``@pytest.mark.django_db(transaction=True)``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

PORTAL = str(Path(sys.executable).with_name("portal"))


def database_url() -> str:
    """A DATABASE_URL naming the database this test runs on (the test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    host = db.get("HOST") or "localhost"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{quote(db['NAME'])}"


def portal_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``portal``: same var/, same secret, the test database."""
    return {
        **os.environ,
        "PORTAL_VAR_DIR": str(settings.VAR_DIR),
        "PORTAL_SECRET_KEY": settings.SECRET_KEY,
        "DATABASE_URL": database_url(),
        **extra,
    }


def run_portal(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PORTAL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=portal_env(),
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
