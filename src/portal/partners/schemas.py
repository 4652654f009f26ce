"""API shapes for sub-accounts. ``…In`` for input, ``…Out`` for output."""

from __future__ import annotations

import datetime as dt

from ninja import Schema
from pydantic import ConfigDict, Field, StrictBool, StrictInt

from portal.billing.schemas import DecimalIn
from portal.partners.services import (
    DAILY_LIMIT_MAX,
    DAILY_LIMIT_MIN,
    RETENTION_DAYS_MAX,
    RETENTION_DAYS_MIN,
)


class SubAccountIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    internal_reference: str | None = None
    notes: str | None = None


class SubAccountPatchIn(Schema):
    """Omitted fields are kept. ``resale_price`` (admins and billing people; domain §8.1)
    sets the sub-account's own resale price from the next cycle, null returning it to the
    partner's default; the Available pool has none. All or nothing: a field refused
    changes no other."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    internal_reference: str | None = None
    notes: str | None = None
    resale_price: DecimalIn | None = None


class SubAccountOut(Schema):
    id: int
    name: str
    kind: str
    status: str
    line_count: int
    contact_name: str
    contact_email: str
    contact_phone: str
    internal_reference: str
    notes: str
    merged_into_id: int | None
    created_at: dt.datetime
    resale_price: str | None = Field(
        default=None,
        description="The sub-account's own resale price per line per month as set now "
        "(it applies from the next cycle), in the partner's currency; null: the partner's "
        "default (GET /billing/resale). Only for roles that read billing (admin, billing, "
        "staff): left out for the others.",
    )


class SubAccountListOut(Schema):
    items: list[SubAccountOut]
    count: int


class ClientSubAccountOut(Schema):
    """A sub-account as a partner's client reads it (domain §8.2): a shape of its own, not
    the partner's with fields taken out. The reseller's notes, the sub-account's kind and
    every price are the reseller's business and have no field here."""

    id: int
    name: str
    status: str
    line_count: int
    contact_name: str
    contact_email: str
    contact_phone: str
    internal_reference: str
    merged_into_id: int | None
    created_at: dt.datetime


class ClientSubAccountListOut(Schema):
    items: list[ClientSubAccountOut]
    count: int


class PartnerOut(Schema):
    """The partner the key acts for and its settings (domain §2). ``display_name`` is the
    name its clients see ("" = ``name``). ``line_price`` is the price per line per month
    charged this cycle, in ``currency``; it is left out for viewer keys, which see no
    billing. Name, slug, timezone, currency and price are set by the provider."""

    name: str
    slug: str
    display_name: str
    timezone: str
    currency: str
    line_price: str | None = None
    default_daily_limit: int
    deletion_retention_days: int
    self_service_requests: bool


class PartnerPatchIn(Schema):
    """Admin keys (or staff with ``partner``). Omitted fields are kept; none may be null.
    ``self_service_requests`` on: an admin other than the requester approves the
    partner's merge and deletion requests (pending ones included); off: the provider's
    staff do."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = None  # trimmed, then at most 120 characters
    self_service_requests: StrictBool | None = None
    default_daily_limit: StrictInt | None = Field(
        default=None, ge=DAILY_LIMIT_MIN, le=DAILY_LIMIT_MAX
    )
    deletion_retention_days: StrictInt | None = Field(
        default=None, ge=RETENTION_DAYS_MIN, le=RETENTION_DAYS_MAX
    )
