"""SQLite connection set-up that makes it agree with PostgreSQL where the rules depend on it.

SQLite's built-in ``lower()`` folds ASCII letters only, so the case-insensitive
unique index on sub-account names would let "ÉCOLE" and "école" coexist there
while PostgreSQL refuses the second. Replacing ``lower()`` on every connection with
Python's Unicode-aware ``str.lower`` keeps the rule the same on both databases.
"""

from __future__ import annotations

from typing import Any


def _unicode_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def install_unicode_lower(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: override ``lower()`` on new SQLite connections."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("lower", 1, _unicode_lower, deterministic=True)
