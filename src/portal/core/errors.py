"""Domain errors. Services raise these; the API and the pages map them once to HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: a refused operation with a message meant for the person who asked."""

    status_code = 400

    def __init__(self, detail: Any = "Bad request.") -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(DomainError):
    status_code = 400


class NotAuthenticated(DomainError):
    status_code = 401


class Forbidden(DomainError):
    """The principal is known but its role may not do this."""

    status_code = 403


class NotFound(DomainError):
    """Missing, or belonging to another partner: the two are indistinguishable."""

    status_code = 404


class Conflict(DomainError):
    """The object's state does not allow the change (wrong status, lock, race lost)."""

    status_code = 409


class Invalid(DomainError):
    """A field's value is not acceptable; ``detail`` names the field by its label.

    ``errors`` (field -> message) carries every refused field of one input at once, so a
    form can show each next to its field; ``detail`` then joins their messages.
    """

    status_code = 422

    def __init__(
        self,
        detail: Any = "Invalid input.",
        *,
        field: str | None = None,
        errors: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.field = field
        self.errors: dict[str, str] = errors or ({field: str(detail)} if field else {})

    @classmethod
    def of_fields(cls, errors: dict[str, str]) -> Invalid:
        """One refusal naming every field in ``errors`` (the first is its ``field``)."""
        return cls(" ".join(errors.values()), field=next(iter(errors)), errors=errors)


class RateLimited(DomainError):
    status_code = 429
