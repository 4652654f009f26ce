"""Writes for users, memberships and API keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from portal.accounts.models import ApiKey, Membership, User, hash_api_key
from portal.accounts.policies import can_manage_users, require
from portal.accounts.principal import Principal
from portal.accounts.roles import Role
from portal.audit.services import audit_record
from portal.core import clock
from portal.core.errors import Conflict, Invalid, NotFound
from portal.core.text import clean_email, clean_text
from portal.partners.models import Partner


def _clean_role(role: Any) -> Role:
    try:
        return Role(str(role))
    except ValueError:
        raise Invalid(
            f"Role {role!r} is not one of {', '.join(Role.values)}.", field="role"
        ) from None


def _check_password(password: str | None, user: User | None = None) -> None:
    if password is None:
        return
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise Invalid(" ".join(exc.messages), field="password") from None


def _new_user(*, email: str, password: str | None, full_name: str, is_staff: bool) -> User:
    clean = clean_email(email, field="email", label="Email", required=True)
    _check_password(password)
    if User.objects.filter(email__iexact=clean).exists():
        raise Conflict(f"A user with email {clean} already exists.")
    try:
        with transaction.atomic():
            user = User.objects.create_user(clean, password, full_name=full_name, is_staff=is_staff)
    except IntegrityError:
        raise Conflict(f"A user with email {clean} already exists.") from None
    if password is None:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


@transaction.atomic
def user_create(
    *,
    principal: Principal,
    partner: Partner,
    email: str,
    role: Any,
    password: str | None = None,
    full_name: str = "",
) -> User:
    """Add a person to a partner with a role. Without a password they must reset it."""
    require(can_manage_users(principal), "Only a partner admin adds users.")
    clean_role = _clean_role(role)
    name = clean_text(full_name, field="full_name", label="Name", max_length=120)
    user = _new_user(email=email, password=password, full_name=name, is_staff=False)
    Membership.objects.create(partner=partner, user=user, role=clean_role)
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="user.create",
        object_type="user",
        object_id=user.pk,
        data={"after": {"email": user.email, "role": clean_role.value}},
    )
    return user


@transaction.atomic
def staff_create(*, principal: Principal, email: str, password: str | None = None) -> User:
    """Create a provider staff user (belongs to no partner)."""
    require(principal.is_staff, "Only provider staff create staff users.")
    user = _new_user(email=email, password=password, full_name="", is_staff=True)
    audit_record(
        principal=principal,
        partner_id=None,
        action="staff.create",
        object_type="user",
        object_id=user.pk,
        data={"after": {"email": user.email}},
    )
    return user


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: ApiKey
    raw: str  # shown once, never stored


@transaction.atomic
def api_key_create(
    *,
    principal: Principal,
    name: str,
    partner: Partner | None = None,
    role: Any = None,
    staff: bool = False,
) -> IssuedKey:
    """Issue a key for a partner role, or a staff key (``staff=True``)."""
    clean_name = clean_text(name, field="name", label="Key name", max_length=120, required=True)
    if staff:
        require(principal.is_staff, "Only provider staff create staff keys.")
        if partner is not None or role:
            raise Invalid("A staff key has no partner and no role.")
        clean_role = ""
    else:
        if partner is None:
            raise Invalid("A partner key needs a partner.", field="partner")
        require(can_manage_users(principal), "Only a partner admin creates API keys.")
        clean_role = _clean_role(role).value
    prefix, raw = ApiKey.generate()
    key = ApiKey.objects.create(
        partner=partner,
        name=clean_name,
        role=clean_role,
        is_staff=staff,
        prefix=prefix,
        key_hash=hash_api_key(raw),
        created_by_id=principal.id if principal.kind == "user" else None,
    )
    audit_record(
        principal=principal,
        partner_id=partner.pk if partner else None,
        action="api_key.create",
        object_type="api_key",
        object_id=key.pk,
        data={"after": {"name": key.name, "role": key.role or "staff", "prefix": key.prefix}},
    )
    return IssuedKey(api_key=key, raw=raw)


@transaction.atomic
def api_key_revoke(*, principal: Principal, key_id: Any) -> ApiKey:
    require(can_manage_users(principal), "Only a partner admin revokes API keys.")
    try:
        key = ApiKey.objects.visible_to(principal).select_for_update().get(pk=int(key_id))
    except (ValueError, TypeError, ApiKey.DoesNotExist):
        raise NotFound(f"API key {key_id} not found.") from None
    if key.is_staff and not principal.is_staff:
        raise NotFound(f"API key {key_id} not found.")
    if key.revoked_at is not None:
        raise Conflict("This key is already revoked.")
    key.revoked_at = clock.now()
    key.save(update_fields=["revoked_at"])
    audit_record(
        principal=principal,
        partner_id=key.partner_id,
        action="api_key.revoke",
        object_type="api_key",
        object_id=key.pk,
        data={"after": {"revoked_at": key.revoked_at}},
    )
    return key


def api_key_authenticate(raw: str) -> ApiKey | None:
    """The live key behind a bearer token, or None. Records when it was last used."""
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != "rpp" or len(raw) > 200:
        return None
    key = ApiKey.objects.filter(prefix=parts[1], revoked_at__isnull=True).first()
    if key is None or not key.matches(raw):
        return None
    now = clock.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        # Throttled bookkeeping, not a state change of the partner's data: no audit.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key
