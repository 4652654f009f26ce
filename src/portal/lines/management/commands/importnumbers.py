"""``portal importnumbers``: add numbers to the provider's inventory from CSV."""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal.core.commands import cli_principal, domain_errors, plural
from portal.lines.services import inventory_import


class Command(BaseCommand):
    help = (
        "Add numbers to the inventory from a CSV file with a header row: column 'number' "
        "(E.164, e.g. +14155550100), optional 'area_code'. Waiting line orders are "
        "fulfilled at once, oldest first. Good rows are added even when others are "
        "rejected; rejected rows are listed with their row number (the header is row 1). "
        "Use - to read standard input."
    )
    stealth_options = ("stdin",)  # call_command(..., stdin=stream) in tests

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", metavar="FILE.csv", help="The CSV file, or - for stdin.")

    def handle(self, *args: Any, file: str, **options: Any) -> None:
        text = self._read(file, options.get("stdin"))
        with domain_errors():
            report = inventory_import(principal=cli_principal("importnumbers"), csv_text=text)
        self.stdout.write(
            f"Added {plural(report.added, 'number')} to the inventory; "
            f"{plural(len(report.rejected), 'row')} rejected."
        )
        self.stdout.write(f"Delivered {plural(report.lines_delivered, 'line')} to waiting orders.")
        if report.rejected:
            self.stdout.write("Rejected rows:")
            for row in report.rejected:
                number = row["number"] or "(empty)"
                self.stdout.write(f"  row {row['row']}: {number}: {row['reason']}")

    def _read(self, file: str, stdin: Any) -> str:
        """The file's text: UTF-8, with or without a byte-order mark."""
        try:
            if file == "-":
                stream = stdin or sys.stdin
                data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read()
            else:
                data = Path(file).read_bytes()
        except FileNotFoundError:
            raise CommandError(f"{file}: no such file.") from None
        except IsADirectoryError:
            raise CommandError(f"{file}: is a directory, not a CSV file.") from None
        except OSError as exc:
            raise CommandError(f"{file}: cannot be read ({exc.strerror or exc}).") from None
        if isinstance(data, str):
            return data.removeprefix("\ufeff")
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{file}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8."
            ) from None
