"""The suite hashes passwords with a fast hasher (``tests/conftest.py``); production keeps
Django's default, a slow one (OWASP ASVS 2.4: PBKDF2 with at least 600,000 rounds)."""

from __future__ import annotations

from django.conf import global_settings
from django.contrib.auth.hashers import identify_hasher

from portal import settings as production
from portal.accounts.models import User
from tests.factories import make_partner, make_user

PRODUCTION_HASHERS = getattr(production, "PASSWORD_HASHERS", global_settings.PASSWORD_HASHERS)


def test_production_hashes_with_pbkdf2_of_at_least_600000_rounds(settings, db):
    settings.PASSWORD_HASHERS = PRODUCTION_HASHERS
    user = make_user(make_partner(), "ada@example.com", "admin", password="a-long-pass-42")
    stored = User.objects.get(pk=user.pk).password
    algorithm, rounds, _salt, _hash = stored.split("$")
    assert algorithm == "pbkdf2_sha256"
    assert int(rounds) >= 600_000
    assert identify_hasher(stored).algorithm == "pbkdf2_sha256"
    assert User.objects.get(pk=user.pk).check_password("a-long-pass-42")
    assert not User.objects.get(pk=user.pk).check_password("a-long-pass-43")


def test_the_suite_uses_a_fast_hasher_that_production_does_not_list(settings):
    assert settings.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.MD5PasswordHasher"
    assert not any("MD5" in h for h in PRODUCTION_HASHERS)
