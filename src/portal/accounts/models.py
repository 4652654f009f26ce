"""People, their partner memberships, API keys, sessions, idempotency and security records."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.db.models.functions import Lower

from portal.core.roles import Role
from portal.core.tenancy import TenantManager


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in with an email address.

    Invariants: email is unique ignoring case (stored lower-case). ``is_staff``
    marks the provider's staff, who belong to no partner; every other user has
    exactly one :class:`Membership`.
    """

    email = models.EmailField(unique=True, max_length=254)
    full_name = models.CharField(max_length=120, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(auto_now_add=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email


class Membership(models.Model):
    """A user's place in one partner, with one of the roles (a client: with its grant)."""

    partner = models.ForeignKey("partners.Partner", on_delete=models.PROTECT, related_name="+")
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="membership")
    role = models.CharField(max_length=16, choices=Role.choices)
    # A client's grant (domain §8.2): the partner's standard sub-accounts it reads. Empty for
    # every other role; a client with none sees nothing.
    sub_accounts = models.ManyToManyField("partners.SubAccount", blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()

    class Meta:
        indexes = [models.Index(fields=["partner", "role"])]

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"


def hash_api_key(raw: str, *, secret: str | None = None) -> str:
    """Keys carry 160+ bits of randomness, so one keyed SHA-256 is enough (no KDF).

    Keyed with ``SECRET_KEY`` unless ``secret`` names another (a fallback).
    """
    from django.conf import settings

    key = settings.SECRET_KEY if secret is None else secret
    return hmac.new(key.encode(), raw.encode(), hashlib.sha256).hexdigest()


def api_key_hashes(raw: str) -> list[str]:
    """The key's hash under ``SECRET_KEY``, then under each of ``SECRET_KEY_FALLBACKS``.

    A key created before the secret key was rotated still verifies while the old key
    is listed as a fallback (as sessions and password-reset links do).
    """
    from django.conf import settings

    return [hash_api_key(raw)] + [
        hash_api_key(raw, secret=fallback) for fallback in settings.SECRET_KEY_FALLBACKS
    ]


class ApiKey(models.Model):
    """A bearer key: a partner's (with a role) or the provider staff's.

    The secret is shown once at creation; only ``prefix`` (for lookup) and a keyed
    hash are stored. A revoked key never authenticates again.
    """

    partner = models.ForeignKey(
        "partners.Partner", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(max_length=120)
    role = models.CharField(max_length=16, choices=Role.choices, blank=True)
    # A client key's grant (domain §8.2), as on :class:`Membership`.
    sub_accounts = models.ManyToManyField("partners.SubAccount", blank=True, related_name="+")
    is_staff = models.BooleanField(default=False)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(is_staff=True, partner__isnull=True, role="")
                    | models.Q(is_staff=False, partner__isnull=False) & ~models.Q(role="")
                ),
                name="api_key_staff_xor_partner_role",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @staticmethod
    def generate() -> tuple[str, str]:
        """A new (prefix, raw key) pair; the raw key is ``rpp_<prefix>_<secret>``."""
        prefix = secrets.token_hex(6)
        return prefix, f"rpp_{prefix}_{secrets.token_urlsafe(32)}"

    def matched_hash(self, raw: str) -> str | None:
        """Which of :func:`api_key_hashes` is this key's stored hash, or None.

        Every candidate is compared, in constant time, so the answer's timing does not
        tell which secret the key was hashed with.
        """
        found = None
        for candidate in api_key_hashes(raw):
            if hmac.compare_digest(self.key_hash, candidate) and found is None:
                found = candidate
        return found

    def matches(self, raw: str) -> bool:
        return self.matched_hash(raw) is not None


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying an ``Idempotency-Key``.

    Unique per (credential, key). ``response_status`` is null while the first
    request is in flight; a duplicate then gets 409.
    """

    scope = models.CharField(max_length=64)  # hash of the credential that sent it
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # hash of method, path and body
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.BinaryField(default=b"")
    response_content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique")
        ]


class LoginAttempt(models.Model):
    """A failed login, kept briefly so repeated guessing can be refused (login throttling).

    One row per failed attempt: the email that was tried (lower-case, whether or
    not such a user exists) and the client address. Rows older than the
    throttling window are pruned as new failures arrive; a successful login
    clears its email's rows. Not partner data, so no audit events.
    """

    email = models.CharField(max_length=254)
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["email", "at"], name="login_attempt_email_at"),
            models.Index(fields=["ip", "at"], name="login_attempt_ip_at"),
            models.Index(fields=["at"], name="login_attempt_at"),
        ]

    def __str__(self) -> str:
        return f"{self.email} from {self.ip} at {self.at:%Y-%m-%d %H:%M:%S}"


class UserSession(AbstractBaseSession):
    """A browser session: Django's database session plus the user it is logged in as.

    ``user`` is copied from the session data each time the session is saved (see
    :class:`portal.accounts.sessions.SessionStore`), so every session of a user can be
    found and ended at once; it is null for a session nobody has logged in with.
    Deleting the row ends the session: its cookie no longer finds anything.
    """

    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )

    @classmethod
    def get_session_store_class(cls) -> type:
        from portal.accounts.sessions import SessionStore

        return SessionStore


class SecurityEvent(models.Model):
    """A refused request: a bad or missing API key (401), a role that may not (403), a
    failed CSRF check, a rate limit, or a failed or paused login (on any login form).

    Refusals change no state, so they are not audit events: they are written by
    :class:`portal.accounts.security.SecurityEventMiddleware` after the refused request
    (and its rolled-back transaction) has finished, and never appear in a partner's
    audit log. Append-only; pruned after ``PORTAL_SECURITY_EVENT_RETENTION_DAYS``.
    ``partner_id`` is the partner the actor belongs to or acts for, when known.
    """

    at = models.DateTimeField()
    # authn.failed, authz.refused, csrf.refused, rate.limited, login.failed, login.throttled
    action = models.CharField(max_length=32)
    status = models.PositiveSmallIntegerField()  # the HTTP status the request got
    actor_type = models.CharField(max_length=16)  # user, api_key, anonymous
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=200)
    partner_id = models.BigIntegerField(null=True, blank=True)
    method = models.CharField(max_length=16)
    path = models.CharField(max_length=500)
    reason = models.CharField(max_length=500)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["at"], name="security_event_at"),
            models.Index(fields=["partner_id", "-at"], name="security_event_partner_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.actor_label} {self.path}"
