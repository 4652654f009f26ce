"""Form helpers shared by every app's pages."""

from __future__ import annotations

from typing import Any

from django import forms

from portal.core.errors import DomainError, Invalid


def attach_error(form: forms.Form, exc: DomainError) -> None:
    """Show a service's refusal on the form: on its field when it names one."""
    field = getattr(exc, "field", None) if isinstance(exc, Invalid) else None
    message = str(exc.detail)
    if field and field in form.fields:
        form.add_error(field, message)
    else:
        form.add_error(None, message)


def non_empty(data: dict[str, Any]) -> dict[str, Any]:
    """Drop blank optional values so services apply their defaults."""
    return {k: v for k, v in data.items() if v not in (None, "")}
