"""File downloads: the one way pages and the API answer with a file to save.

Every CSV export (invoices, analytics) goes through :func:`csv_response`, so they all
open the same way in a spreadsheet: UTF-8 with a byte-order mark (without it Excel reads
names as Latin-1), the ``csv`` module's quoting. Cells are made safe by their caller
(:func:`portal.core.text.csv_safe`): only the caller knows which cells are numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence

from django.http import HttpResponse


def attachment(content: bytes | str, *, content_type: str, filename: str) -> HttpResponse:
    """A response that browsers save as ``filename`` rather than show."""
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def csv_response(filename: str, rows: Iterable[Sequence[str]]) -> HttpResponse:
    """``rows`` (header first) as a CSV download named ``filename``."""
    response = attachment(b"", content_type="text/csv; charset=utf-8", filename=filename)
    response.write("\ufeff")  # so spreadsheets read the names as UTF-8
    csv.writer(response).writerows(rows)
    return response
