"""Runs the benchmark suites and prints one table.

Each suite is a module ``bench/<name>.py`` with a function ``run(report: Report)``
that builds its data (COPY-fast, straight into the tables), measures the portal's
code path and a baseline on the same data in the same run, and adds rows to the
report. ``make bench`` runs every suite on a scratch PostgreSQL database
(``BENCH_DATABASE_URL``, default ``postgres://postgres@127.0.0.1:5432/portal_bench``),
which is dropped and created afresh so runs do not influence each other.

Usage: ``python -m bench.run [suite ...]`` (default: all of SUITES).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

SUITES = ["billing", "analytics", "merge", "web", "soak", "webhooks"]
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"


@dataclass
class Row:
    measure: str
    figure: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> str:
        if self.baseline in (None, 0):
            return ""
        return f"{self.figure / self.baseline:.2f}×"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.measure}: {row.figure:.3f} {row.unit}", file=sys.stderr, flush=True)
        return row

    def render(self) -> str:
        head = ("measure", "figure", "baseline", "ratio", "target", "met")
        body = [
            (
                r.measure,
                f"{r.figure:,.3f} {r.unit}",
                (
                    f"{r.baseline:,.3f} {r.unit} ({r.baseline_label})"
                    if r.baseline is not None
                    else ""
                ),
                r.ratio,
                r.target,
                "" if r.met is None else ("yes" if r.met else "NO"),
            )
            for r in self.rows
        ]
        widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=False)]
        lines = [
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
            for row in [head, *body]
        ]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """``with timed() as t: ...`` then ``t()`` is the elapsed wall time in seconds."""
    start = time.perf_counter()
    end: list[float] = []
    try:
        yield lambda: (end[0] if end else time.perf_counter()) - start
    finally:
        end.append(time.perf_counter())


def bench_scale() -> float:
    """``BENCH_SCALE`` (default 1): every suite multiplies its data sizes by it."""
    try:
        scale = float(os.environ.get("BENCH_SCALE", "1"))
    except ValueError as exc:
        raise SystemExit("BENCH_SCALE must be a number such as 0.1") from exc
    if not 0 < scale <= 10:
        raise SystemExit("BENCH_SCALE must be in (0, 10]")
    return scale


def setup_database() -> None:
    """Points Django at a fresh scratch database and migrates it."""
    url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    if not url.startswith("postgres"):
        raise SystemExit("make bench needs PostgreSQL: set BENCH_DATABASE_URL=postgres://…")
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # Pages are measured as production serves them: hashed static names from the manifest.
    call_command("collectstatic", interactive=False, verbosity=0)


def main(argv: list[str]) -> int:
    names = argv or SUITES
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"unknown suite(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}")
        return 2
    setup_database()
    report = Report()
    for name in names:
        print(f"[{name}]", file=sys.stderr, flush=True)
        importlib.import_module(f"bench.{name}").run(report)
    print()
    print(
        f"Benchmarks — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print()
    print(report.render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
