"""Secrets and signatures, per the Standard Webhooks specification.

A secret is ``whsec_`` + base64 of 32 random bytes; the key is those bytes. A signature
is ``v1,`` + base64 HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``, computed by
the specification's own Python package (``standardwebhooks``). While a rotated secret
still signs (24 hours), the header carries both signatures, space-separated, so a
receiver verifies with either the old or the new secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Iterable

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
# How long a rotated secret keeps signing beside the new one.
ROTATION_OVERLAP = dt.timedelta(hours=24)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_header(
    secrets_in_force: Iterable[str], msg_id: str, at: dt.datetime, body: str
) -> str:
    """The ``webhook-signature`` value: one ``v1,…`` per secret, newest first."""
    return " ".join(
        Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body.encode())
        for secret in secrets_in_force
        if secret
    )


def headers_for(
    secrets_in_force: Iterable[str], msg_id: str, at: dt.datetime, body: str
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt sent at ``at``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature_header(secrets_in_force, msg_id, at, body),
    }
