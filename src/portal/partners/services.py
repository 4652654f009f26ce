"""Writes for partners and sub-accounts: one function per change, one audit event each."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from portal.accounts.policies import require
from portal.audit.services import audit_record
from portal.core.errors import Conflict, Invalid
from portal.core.phone import normalize_e164
from portal.core.principal import Principal
from portal.core.retry import retry_on_lost_race
from portal.core.text import clean_email, clean_text
from portal.partners.models import Partner, SubAccount, SubAccountKind
from portal.partners.policies import (
    can_change_partner_settings,
    can_change_sub_accounts,
    can_create_partner,
    ensure_editable,
    ensure_standard,
)
from portal.partners.selectors import partner_for, sub_account_name_taken

AVAILABLE_POOL_NAME = "Available"
# What a sub-account's fields hold: the pages' inputs take their maxlength from here.
NAME_MAX = 120
CONTACT_NAME_MAX = 120
EMAIL_MAX = 254
PHONE_MAX = 32  # as typed, with spaces and punctuation; stored as E.164
REFERENCE_MAX = 120
NOTES_MAX = 5000
# The partner's own settings (domain §2). A line's daily limit is a whole number from 1 to
# 100,000 (domain §2, as lines.services checks it): a default outside that range would
# give new lines a limit the line services refuse.
DISPLAY_NAME_MAX = 120
DAILY_LIMIT_MIN, DAILY_LIMIT_MAX = 1, 100_000
RETENTION_DAYS_MIN, RETENTION_DAYS_MAX = 7, 365
PARTNER_SETTINGS_FIELDS = (
    "display_name",
    "self_service_requests",
    "default_daily_limit",
    "deletion_retention_days",
)
SUB_ACCOUNT_FIELDS = (
    "name",
    "contact_name",
    "contact_email",
    "contact_phone",
    "internal_reference",
    "notes",
)


def sub_accounts_lock(ids: Iterable[int]) -> dict[int, SubAccount]:
    """Lock sub-accounts a change touches, by id: ``FOR NO KEY UPDATE`` in id order, the
    place sub-accounts take in the lock order of docs/architecture.md (after the partner
    and the lines). Inside the caller's transaction; on SQLite a plain read (its
    IMMEDIATE transaction already holds the database)."""
    wanted = sorted(set(ids))
    rows = SubAccount.objects.select_for_update(no_key=True).filter(pk__in=wanted).order_by("pk")
    return {sa.pk: sa for sa in rows}


def _clean_currency(value: str) -> str:
    code = (value or "").strip().upper()
    # isascii: "ÉUR" is alphabetic to str.isalpha but no ISO 4217 code.
    if len(code) != 3 or not (code.isascii() and code.isalpha()):
        raise Invalid(f"Currency {value!r} is not an ISO 4217 code such as USD.", field="currency")
    return code


def _clean_timezone(value: str) -> str:
    name = (value or "").strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Invalid(
            f"Timezone {value!r} is not an IANA name such as Europe/Paris.", field="timezone"
        ) from None
    return name


def _clean_price(value: Any) -> Decimal:
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Invalid(f"Line price {value!r} is not a number.", field="line_price") from None
    if not price.is_finite() or price < 0 or price >= Decimal("100000000"):
        raise Invalid(f"Line price {value!r} must be between 0 and 99999999.", field="line_price")
    if price.as_tuple().exponent < -4:  # type: ignore[operator]
        raise Invalid("Line price has more than 4 decimal places.", field="line_price")
    return price


def _clean_whole(value: Any, *, field: str, label: str, low: int, high: int) -> int:
    # bool is an int to Python; True is no number of days.
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{label} must be a whole number from {low:,} to {high:,}.", field=field)
    if not low <= value <= high:
        raise Invalid(
            f"{label} must be between {low:,} and {high:,}; {value:,} is not.", field=field
        )
    return value


def _clean_daily_limit(value: Any) -> int:
    return _clean_whole(
        value,
        field="default_daily_limit",
        label="The default daily limit",
        low=DAILY_LIMIT_MIN,
        high=DAILY_LIMIT_MAX,
    )


def _clean_retention_days(value: Any) -> int:
    return _clean_whole(
        value,
        field="deletion_retention_days",
        label="The days a deleted sub-account can be restored",
        low=RETENTION_DAYS_MIN,
        high=RETENTION_DAYS_MAX,
    )


def _clean_flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(
            "Self-service approvals must be true or false.", field="self_service_requests"
        )
    return value


def clean_partner_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Every setting given, cleaned; every refused one reported at once (one Invalid).

    Public so a page whose form refused some fields itself can report the service's
    refusals of the others beside them, all at once."""
    cleaners: dict[str, Any] = {
        "display_name": lambda v: clean_text(
            v, field="display_name", label="Display name", max_length=DISPLAY_NAME_MAX
        ),
        "self_service_requests": _clean_flag,
        "default_daily_limit": _clean_daily_limit,
        "deletion_retention_days": _clean_retention_days,
    }
    cleaned: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, clean in cleaners.items():
        if name in values:
            try:
                cleaned[name] = clean(values[name])
            except Invalid as exc:
                errors[name] = str(exc.detail)
    if errors:
        raise Invalid.of_fields(errors)
    return cleaned


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "partner"
    slug, n = base, 2
    while Partner.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def partner_create(
    *,
    principal: Principal,
    name: str,
    timezone: str = "UTC",
    currency: str = "USD",
    line_price: Decimal | str = Decimal("50.00"),
    default_daily_limit: int = 50,
    deletion_retention_days: int = 30,
    self_service_requests: bool = False,
) -> Partner:
    """Create a partner and its Available pool."""
    require(can_create_partner(principal), "Only provider staff create partners.")
    clean_name = clean_text(name, field="name", label="Partner name", max_length=120, required=True)
    settings = clean_partner_settings(
        {
            "default_daily_limit": default_daily_limit,
            "deletion_retention_days": deletion_retention_days,
            "self_service_requests": self_service_requests,
        }
    )
    partner = Partner.objects.create(
        name=clean_name,
        slug=_unique_slug(clean_name),
        timezone=_clean_timezone(timezone),
        currency=_clean_currency(currency),
        line_price=_clean_price(line_price),
        **settings,
    )
    SubAccount.objects.create(
        partner=partner, name=AVAILABLE_POOL_NAME, kind=SubAccountKind.AVAILABLE
    )
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="partner.create",
        object_type="partner",
        object_id=partner.pk,
        data={
            "after": {
                "name": partner.name,
                "slug": partner.slug,
                "currency": partner.currency,
                "timezone": partner.timezone,
                "line_price": str(partner.line_price),
            }
        },
    )
    return partner


@retry_on_lost_race
@transaction.atomic
def partner_settings_update(*, principal: Principal, **changes: Any) -> Partner:
    """Change the acting partner's own settings (domain §2): ``display_name`` (trimmed,
    blank = the partner's name), ``self_service_requests``, ``default_daily_limit`` and
    ``deletion_retention_days``.

    The partner is the principal's (staff: the one they act for), never one the caller
    names, so no key reaches another partner's settings. Each takes effect at once:
    self-service decides pending requests too (``workflows.policies.can_decide`` reads
    the partner when a request is decided), the default limit is what lines assigned or
    returned to Available from now on get, and the retention days set the purge date of
    deletions approved from now on (scheduled ones keep theirs). Locks the partner
    (second in the lock order); one ``partner.settings_update`` event with the changed
    fields only; a change that changes nothing records nothing.
    """
    require(
        can_change_partner_settings(principal),
        "Only a partner admin changes the partner's settings.",
    )
    unknown = set(changes) - set(PARTNER_SETTINGS_FIELDS)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}.")
    cleaned = clean_partner_settings(changes)
    partner = partner_for(principal, lock=True)
    before = {k: getattr(partner, k) for k in cleaned}
    after = {k: v for k, v in cleaned.items() if before[k] != v}
    if not after:
        return partner
    for key, value in after.items():
        setattr(partner, key, value)
    partner.save(update_fields=list(after))
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="partner.settings_update",
        object_type="partner",
        object_id=partner.pk,
        data={"before": {k: before[k] for k in after}, "after": after},
    )
    return partner


def _clean_sub_account_fields(values: dict[str, Any]) -> dict[str, str]:
    """Every field given, cleaned; every refused field reported at once (one Invalid)."""
    cleaners: dict[str, Any] = {
        "name": lambda v: clean_text(
            v, field="name", label="Sub-account name", max_length=NAME_MAX, required=True
        ),
        "contact_name": lambda v: clean_text(
            v, field="contact_name", label="Contact name", max_length=CONTACT_NAME_MAX
        ),
        "contact_email": lambda v: clean_email(v, field="contact_email", label="Contact email"),
        "contact_phone": _clean_contact_phone,
        "internal_reference": lambda v: clean_text(
            v, field="internal_reference", label="Internal reference", max_length=REFERENCE_MAX
        ),
        "notes": lambda v: clean_text(
            v, field="notes", label="Notes", max_length=NOTES_MAX, multiline=True
        ),
    }
    cleaned: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, clean in cleaners.items():
        if name in values:
            try:
                cleaned[name] = clean(values[name])
            except Invalid as exc:
                errors[name] = str(exc.detail)
    if errors:
        raise Invalid.of_fields(errors)
    return cleaned


def _clean_contact_phone(value: Any) -> str:
    raw = clean_text(value, field="contact_phone", label="Contact phone", max_length=PHONE_MAX)
    return normalize_e164(raw, field="contact_phone", label="Contact phone") if raw else ""


def _ensure_name_free(partner_id: int, name: str, *, exclude_id: int | None = None) -> None:
    if sub_account_name_taken(partner_id, name, exclude_id=exclude_id):
        raise Conflict(f"A sub-account named {name!r} already exists.")


@transaction.atomic
def sub_account_create(*, principal: Principal, name: str, **details: Any) -> SubAccount:
    """Create an active standard sub-account in the principal's partner (staff: the one
    they act for; ``partner_for``)."""
    require(can_change_sub_accounts(principal), "Your role may not create sub-accounts.")
    partner = partner_for(principal)
    unknown = set(details) - set(SUB_ACCOUNT_FIELDS)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}.")
    cleaned = _clean_sub_account_fields({"name": name, **details})
    _ensure_name_free(partner.pk, cleaned["name"])
    try:
        with transaction.atomic():
            sub_account = SubAccount.objects.create(partner=partner, **cleaned)
    except IntegrityError:  # a concurrent create with the same name won the race
        raise Conflict(f"A sub-account named {cleaned['name']!r} already exists.") from None
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="sub_account.create",
        object_type="sub_account",
        object_id=sub_account.pk,
        sub_account_id=sub_account.pk,
        data={"after": cleaned},
    )
    return sub_account


@retry_on_lost_race
@transaction.atomic
def sub_account_update(
    *, principal: Principal, sub_account: SubAccount, **changes: Any
) -> SubAccount:
    """Change a sub-account's name or details. The Available pool keeps its name."""
    require(can_change_sub_accounts(principal), "Your role may not change sub-accounts.")
    unknown = set(changes) - set(SUB_ACCOUNT_FIELDS)
    if unknown:
        raise Invalid(f"Unknown fields: {', '.join(sorted(unknown))}.")
    sub_account = sub_accounts_lock([sub_account.pk])[sub_account.pk]
    ensure_editable(sub_account)
    cleaned = _clean_sub_account_fields(changes)
    if "name" in cleaned and cleaned["name"] != sub_account.name:
        ensure_standard(sub_account, action="renamed")
        _ensure_name_free(sub_account.partner_id, cleaned["name"], exclude_id=sub_account.pk)
    before = {k: getattr(sub_account, k) for k in cleaned}
    after = {k: v for k, v in cleaned.items() if before[k] != v}
    if not after:
        return sub_account
    for key, value in after.items():
        setattr(sub_account, key, value)
    try:
        with transaction.atomic():
            sub_account.save(update_fields=[*after, "updated_at"])
    except IntegrityError:
        raise Conflict(f"A sub-account named {cleaned.get('name')!r} already exists.") from None
    audit_record(
        principal=principal,
        partner_id=sub_account.partner_id,
        action="sub_account.update",
        object_type="sub_account",
        object_id=sub_account.pk,
        sub_account_id=sub_account.pk,
        data={"before": {k: before[k] for k in after}, "after": after},
    )
    return sub_account
