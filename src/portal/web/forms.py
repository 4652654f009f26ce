"""Form helpers shared by every app's pages."""

from __future__ import annotations

from typing import Any

from django import forms

from portal.core.errors import DomainError, Invalid


def attach_error(form: forms.Form, exc: DomainError) -> None:
    """Show a service's refusal on the form: each message on the field it names (every
    refused field at once when the service reports several), the rest above the form."""
    errors = exc.errors if isinstance(exc, Invalid) else {}
    if not errors:
        form.add_error(None, str(exc.detail))
    for field, message in errors.items():
        form.add_error(field if field in form.fields else None, message)


def non_empty(data: dict[str, Any]) -> dict[str, Any]:
    """Drop blank optional values so services apply their defaults."""
    return {k: v for k, v in data.items() if v not in (None, "")}
