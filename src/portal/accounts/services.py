"""Writes for users, memberships and API keys."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import DatabaseError, IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from portal.accounts.models import (
    ApiKey,
    LoginAttempt,
    Membership,
    SecurityEvent,
    User,
    hash_api_key,
)
from portal.accounts.policies import can_manage_users, require
from portal.accounts.sessions import sessions_end_for_user
from portal.audit.services import audit_record
from portal.core import clock
from portal.core.errors import Conflict, Invalid, NotFound, RateLimited
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.core.tenancy import db_id
from portal.core.text import clean_email, clean_text
from portal.partners.models import Partner, SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.selectors import partner_for


def _clean_role(role: Any) -> Role:
    try:
        return Role(str(role))
    except ValueError:
        raise Invalid(
            f"Role {role!r} is not one of {', '.join(Role.values)}.", field="role"
        ) from None


def _clean_grant(partner: Partner, role: Role, sub_account_ids: Any) -> list[int]:
    """The sub-account ids a client with ``role`` is granted, checked (domain §8.2): for a
    client, a non-empty set of ``partner``'s standard sub-accounts that are not purged;
    for any other role, none may be named. Raises :class:`Invalid` otherwise."""
    if role != Role.CLIENT:
        if sub_account_ids:
            raise Invalid(
                f"Only a client is granted sub-accounts; a {role.label.lower()} sees them all.",
                field="sub_account_ids",
            )
        return []
    if isinstance(sub_account_ids, str):
        sub_account_ids = [part for part in sub_account_ids.split(",") if part.strip()]
    asked = list(sub_account_ids or [])
    if not asked:
        raise Invalid("A client must be granted at least one sub-account.", field="sub_account_ids")
    ids = {db_id(value.strip() if isinstance(value, str) else value) for value in asked}
    if None in ids:
        raise Invalid("Sub-account ids must be whole numbers.", field="sub_account_ids")
    found = set(
        SubAccount.objects.filter(
            partner_id=partner.pk, pk__in=sorted(ids), kind=SubAccountKind.STANDARD
        )
        .exclude(status=SubAccountStatus.DELETED)
        .values_list("pk", flat=True)
    )
    missing = sorted(ids - found)  # type: ignore[operator]
    if missing:
        listed = ", ".join(str(pk) for pk in missing)
        raise Invalid(
            f"Sub-account {listed} is not one of {partner.name}'s sub-accounts a client may "
            "be granted (Available and purged ones cannot be).",
            field="sub_account_ids",
        )
    return sorted(found)


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
    email: str,
    role: Any,
    password: str | None = None,
    full_name: str = "",
    sub_account_ids: Any = None,
) -> User:
    """Add a person with a role to the principal's partner (staff: the one they act for).
    Without a password they must reset it. A client (domain §8.2) comes with the non-empty
    set of the partner's sub-accounts it may read (``sub_account_ids``)."""
    require(can_manage_users(principal), "Only a partner admin adds users.")
    partner = partner_for(principal)
    clean_role = _clean_role(role)
    granted = _clean_grant(partner, clean_role, sub_account_ids)
    name = clean_text(full_name, field="full_name", label="Name", max_length=120)
    user = _new_user(email=email, password=password, full_name=name, is_staff=False)
    membership = Membership.objects.create(partner=partner, user=user, role=clean_role)
    after: dict[str, Any] = {"email": user.email, "role": clean_role.value}
    if granted:
        membership.sub_accounts.set(granted)
        after["sub_account_ids"] = granted
    audit_record(
        principal=principal,
        partner_id=partner.pk,
        action="user.create",
        object_type="user",
        object_id=user.pk,
        data={"after": after},
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
    role: Any = None,
    staff: bool = False,
    sub_account_ids: Any = None,
) -> IssuedKey:
    """Issue a key with ``role`` in the principal's partner (staff: the one they act
    for), or, with ``staff=True``, a staff key: no partner, no role, staff only. A client
    key (domain §8.2) comes with the non-empty set of the partner's sub-accounts it reads."""
    clean_name = clean_text(name, field="name", label="Key name", max_length=120, required=True)
    partner: Partner | None = None
    if staff:
        require(principal.is_staff, "Only provider staff create staff keys.")
        if role or sub_account_ids:
            raise Invalid("A staff key has no partner, no role and no sub-accounts.")
        clean_role = ""
        granted: list[int] = []
    else:
        require(can_manage_users(principal), "Only a partner admin creates API keys.")
        partner = partner_for(principal)
        checked = _clean_role(role)
        granted = _clean_grant(partner, checked, sub_account_ids)
        clean_role = checked.value
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
    after: dict[str, Any] = {"name": key.name, "role": key.role or "staff", "prefix": key.prefix}
    if granted:
        key.sub_accounts.set(granted)
        after["sub_account_ids"] = granted
    audit_record(
        principal=principal,
        partner_id=partner.pk if partner else None,
        action="api_key.create",
        object_type="api_key",
        object_id=key.pk,
        data={"after": after},
    )
    return IssuedKey(api_key=key, raw=raw)


@transaction.atomic
def api_key_revoke(*, principal: Principal, key_id: Any) -> ApiKey:
    require(can_manage_users(principal), "Only a partner admin revokes API keys.")
    try:
        key = (
            ApiKey.objects.visible_to(principal).select_for_update(no_key=True).get(pk=int(key_id))
        )
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
    """The live key behind a bearer token, or None. Records when it was last used.

    A key hashed under a previous secret key (one of ``SECRET_KEY_FALLBACKS``) is
    re-hashed under the current one as it is used, so removing the fallback later
    locks out only keys nobody used since the rotation.
    """
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != "rpp" or len(raw) > 200:
        return None
    key = ApiKey.objects.filter(prefix=parts[1], revoked_at__isnull=True).first()
    matched = key.matched_hash(raw) if key is not None else None
    if key is None or matched is None:
        return None
    now = clock.now()
    changes: dict[str, Any] = {}
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        changes["last_used_at"] = now
    current = hash_api_key(raw)
    if matched != current:
        changes["key_hash"] = current
    if changes:
        # Bookkeeping, not a state change of the partner's data: no audit event. The
        # re-hash stores the same secret under the current key (as Django re-hashes a
        # password with a newer hasher at login): who may use the key does not change.
        # Conditional on the hash it was read with, so concurrent uses cannot undo it.
        ApiKey.objects.filter(pk=key.pk, key_hash=key.key_hash).update(**changes)
        for field, value in changes.items():
            setattr(key, field, value)
    return key


# --- Managing a partner's users (Settings → Users) -------------------------------------


def _membership_for_change(principal: Principal, user_id: Any) -> Membership:
    """The membership of ``user_id`` in the principal's partner, with the partner locked.

    Locking the partner row serialises every user change of that partner, so two
    admins demoting each other at once cannot leave the partner without an admin.
    """
    require(can_manage_users(principal), "Only a partner admin manages users.")
    membership = (
        Membership.objects.visible_to(principal)
        .select_related("user")
        .filter_id("user_id", user_id)
        .first()
    )
    if membership is None:
        raise NotFound(f"User {user_id} not found.")
    Partner.objects.select_for_update(no_key=True).filter(pk=membership.partner_id).first()
    membership = Membership.objects.select_related("user").get(pk=membership.pk)
    return membership


def _active_admin_count(partner_id: int) -> int:
    return Membership.objects.filter(
        partner_id=partner_id, role=Role.ADMIN, user__is_active=True
    ).count()


def _ensure_keeps_an_admin(principal: Principal, membership: Membership, *, doing: str) -> None:
    """Refuse a change that would leave the partner with no active admin."""
    if membership.role != Role.ADMIN or not membership.user.is_active:
        return
    if _active_admin_count(membership.partner_id) > 1:
        return
    if principal.kind == "user" and principal.id == membership.user_id:
        raise Conflict(
            f"You are the last active admin of this partner, so you cannot {doing} yourself. "
            "Make another user an admin first."
        )
    raise Conflict(
        f"{membership.user.email} is the last active admin of this partner and cannot be "
        f"{doing}d. Make another user an admin first."
    )


def _send_password_link(
    *, user: User, partner: Partner | None, base_url: str, template: str, subject: str
) -> None:
    """Email ``user`` a one-time link to set their password (Django's reset token)."""
    path = reverse(
        "accounts:password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    body = render_to_string(
        template,
        {"user": user, "partner": partner, "link": base_url.rstrip("/") + path},
    )
    send_mail(subject, body, None, [user.email])


@transaction.atomic
def user_invite(
    *,
    principal: Principal,
    email: str,
    role: Any,
    base_url: str,
    full_name: str = "",
    sub_account_ids: Any = None,
) -> User:
    """Add a user to the principal's partner without a password and email them a link
    to set one (a client: with the sub-accounts it may read, as :func:`user_create`).

    The user is created by :func:`user_create` (its one audit event, ``user.create``);
    the email leaves only once the transaction has committed.
    """
    user = user_create(
        principal=principal,
        email=email,
        role=role,
        full_name=full_name,
        sub_account_ids=sub_account_ids,
    )
    partner = user.membership.partner  # cached by user_create
    transaction.on_commit(
        lambda: _send_password_link(
            user=user,
            partner=partner,
            base_url=base_url,
            template="accounts/email/invite.txt",
            subject=f"You are invited to {partner.name} on the Partner Portal",
        )
    )
    return user


@transaction.atomic
def user_role_change(
    *, principal: Principal, user_id: Any, role: Any, sub_account_ids: Any = None
) -> User:
    """Give a partner user another role. The partner always keeps an active admin.

    A client's grant is part of its role: making someone a client, or changing a
    client's sub-accounts, names the non-empty set (``sub_account_ids``); leaving the
    client role clears it."""
    new_role = _clean_role(role)
    membership = _membership_for_change(principal, user_id)
    granted = _clean_grant(membership.partner, new_role, sub_account_ids)
    before = membership.role
    had = sorted(membership.sub_accounts.values_list("pk", flat=True))
    if before == new_role and had == granted:
        return membership.user
    if new_role != Role.ADMIN:
        _ensure_keeps_an_admin(principal, membership, doing="demote")
    membership.role = new_role
    membership.save(update_fields=["role"])
    membership.sub_accounts.set(granted)
    was: dict[str, Any] = {"role": before}
    now: dict[str, Any] = {"role": new_role.value}
    if had or granted:
        was["sub_account_ids"], now["sub_account_ids"] = had, granted
    audit_record(
        principal=principal,
        partner_id=membership.partner_id,
        action="user.role_change",
        object_type="user",
        object_id=membership.user_id,
        data={"email": membership.user.email, "before": was, "after": now},
    )
    return membership.user


@transaction.atomic
def user_deactivate(*, principal: Principal, user_id: Any) -> User:
    """Stop a partner user from logging in and end their sessions on every device.

    The sessions are deleted, not merely refused while the user is inactive, so
    reactivating the user later does not bring an old session back.
    """
    membership = _membership_for_change(principal, user_id)
    user = membership.user
    if not user.is_active:
        raise Conflict(f"{user.email} is already deactivated.")
    _ensure_keeps_an_admin(principal, membership, doing="deactivate")
    user.is_active = False
    user.save(update_fields=["is_active"])
    sessions_ended = sessions_end_for_user(user.pk)
    audit_record(
        principal=principal,
        partner_id=membership.partner_id,
        action="user.deactivate",
        object_type="user",
        object_id=user.pk,
        data={
            "email": user.email,
            "before": {"active": True},
            "after": {"active": False},
            "sessions_ended": sessions_ended,
        },
    )
    return user


@transaction.atomic
def user_reactivate(*, principal: Principal, user_id: Any) -> User:
    """Let a deactivated partner user log in again, with the role they had."""
    membership = _membership_for_change(principal, user_id)
    user = membership.user
    if user.is_active:
        raise Conflict(f"{user.email} is already active.")
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit_record(
        principal=principal,
        partner_id=membership.partner_id,
        action="user.reactivate",
        object_type="user",
        object_id=user.pk,
        data={"email": user.email, "before": {"active": False}, "after": {"active": True}},
    )
    return user


@transaction.atomic
def user_password_set(*, principal: Principal, user: User, password: str, via: str) -> User:
    """Set a user's password: ``via`` "change" (logged in) or "reset" (emailed link).

    Only the user themselves sets their password; the principal is that user.
    The password is set on ``user`` itself, so a caller keeping the session (see
    ``update_session_auth_hash``) sees the new hash.
    """
    if principal.kind != "user" or principal.id != user.pk:
        raise NotFound(f"User {user.pk} not found.")
    if via not in ("change", "reset"):
        raise Invalid(f"Unknown way of setting a password: {via!r}.")
    _check_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    partner_id = (
        Membership.objects.filter(user_id=user.pk).values_list("partner_id", flat=True).first()
    )
    audit_record(
        principal=principal,
        partner_id=partner_id,
        action="user.password_set",
        object_type="user",
        object_id=user.pk,
        data={"email": user.email, "via": via},
    )
    return user


# --- Login throttling ----------------------------------------------------------------
# Failed logins are counted per email and per client address in a sliding window;
# reaching a limit pauses logins for that email (or address) for LOGIN_LOCKOUT.
# Refused attempts are not counted, so the pause ends on time even while guessing
# goes on, and a guesser cannot keep a victim locked out for longer than that.
# portal.accounts.backends calls these from inside every authenticate(), so every login
# form (the login page, the Django admin's) shares the one count.

LOGIN_WINDOW = dt.timedelta(minutes=15)
LOGIN_LOCKOUT = dt.timedelta(minutes=15)
LOGIN_MAX_FAILURES_PER_EMAIL = 5
LOGIN_MAX_FAILURES_PER_IP = 20
_ATTEMPT_RETENTION = LOGIN_WINDOW + LOGIN_LOCKOUT


def _locked_until(times: list[dt.datetime], limit: int) -> dt.datetime | None:
    """When the pause caused by ``times`` (failures, oldest first) ends, or None.

    A pause starts at a failure that was the ``limit``-th within LOGIN_WINDOW.
    """
    until = None
    for i in range(limit - 1, len(times)):
        if times[i] - times[i - limit + 1] <= LOGIN_WINDOW:
            until = times[i] + LOGIN_LOCKOUT
    return until


def login_throttle_check(*, email: str, ip: str | None) -> None:
    """Raise :class:`RateLimited` while logins for ``email`` or from ``ip`` are paused."""
    now = clock.now()
    since = now - _ATTEMPT_RETENTION
    recent = LoginAttempt.objects.filter(at__gt=since).order_by("at")
    pauses = [
        _locked_until(
            list(recent.filter(email=email.lower()).values_list("at", flat=True)),
            LOGIN_MAX_FAILURES_PER_EMAIL,
        )
    ]
    if ip:
        pauses.append(
            _locked_until(
                list(recent.filter(ip=ip).values_list("at", flat=True)), LOGIN_MAX_FAILURES_PER_IP
            )
        )
    until = max((p for p in pauses if p is not None), default=None)
    if until is not None and until > now:
        minutes = max(1, -(-int((until - now).total_seconds()) // 60))
        raise RateLimited(
            "Too many failed login attempts. For your security, logging in is paused for "
            f"{minutes} minute{'s' if minutes != 1 else ''}. You can also reset your password."
        )


def login_failure_record(*, email: str, ip: str | None) -> None:
    """Count a failed login (and forget failures too old to matter)."""
    now = clock.now()
    LoginAttempt.objects.filter(at__lt=now - _ATTEMPT_RETENTION).delete()
    LoginAttempt.objects.create(email=email.lower()[:254], ip=ip or None, at=now)


def login_success_record(*, email: str) -> None:
    """A correct password clears that email's failures (the address keeps its count)."""
    LoginAttempt.objects.filter(email=email.lower()).delete()


# --- Security log ----------------------------------------------------------------------
# Refused requests (portal.accounts.security). Like login attempts these are bookkeeping,
# not partner data: no audit events.


def security_events_record(*, rows: list[dict[str, Any]]) -> None:
    """Store refused requests, one :class:`SecurityEvent` per row of field values.

    Called after the refused request's own transaction has ended. A database that
    cannot take them must not turn a refusal into a server error: the caller has
    logged them already.
    """
    try:
        with transaction.atomic():
            SecurityEvent.objects.bulk_create([SecurityEvent(**row) for row in rows])
    except DatabaseError:
        logging.getLogger("portal.security").exception(
            "Could not store %d security event(s).", len(rows)
        )


def security_events_prune(*, now: dt.datetime | None = None) -> int:
    """Forget security events older than ``SECURITY_EVENT_RETENTION_DAYS``."""
    cutoff = (now or clock.now()) - dt.timedelta(days=settings.SECURITY_EVENT_RETENTION_DAYS)
    deleted, _ = SecurityEvent.objects.filter(at__lt=cutoff).delete()
    return deleted
