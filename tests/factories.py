"""Factories that build valid objects through the services, so invariants hold."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from portal.accounts.principal import Principal
from portal.accounts.services import api_key_create, user_create
from portal.lines.models import Line
from portal.lines.services import inventory_import, line_order_create
from portal.partners.models import Partner, SubAccount
from portal.partners.services import partner_create, sub_account_create

SYSTEM = Principal.system("tests")
_numbers = itertools.count(1000)
_partners = itertools.count(1)


def fresh_numbers(count: int, area_code: str = "415") -> list[str]:
    """Distinct valid North American numbers, never repeated within a test run."""
    return [f"+1{area_code}555{next(_numbers) % 10000:04d}" for _ in range(count)]


@dataclass
class Tenant:
    """A partner with one key per role, ready for API calls."""

    partner: Partner
    keys: dict[str, str]

    def principal(self, role: str = "admin") -> Principal:
        from portal.accounts.services import api_key_authenticate

        key = api_key_authenticate(self.keys[role])
        assert key is not None
        return Principal.for_api_key(key)


def make_partner(name: str | None = None, **kwargs: object) -> Partner:
    return partner_create(principal=SYSTEM, name=name or f"Partner {next(_partners)}", **kwargs)


def make_tenant(name: str | None = None, **kwargs: object) -> Tenant:
    partner = make_partner(name, **kwargs)
    keys = {
        role: api_key_create(principal=SYSTEM, name=f"{role} key", partner=partner, role=role).raw
        for role in ("admin", "manager", "billing", "viewer")
    }
    return Tenant(partner=partner, keys=keys)


def make_staff_key() -> str:
    return api_key_create(principal=SYSTEM, name="staff key", staff=True).raw


def make_sub_account(partner: Partner, name: str | None = None, **details: str) -> SubAccount:
    return sub_account_create(
        principal=SYSTEM.acting_for(partner.pk),
        partner=partner,
        name=name or f"Client {next(_partners)} – Sales",
        **details,
    )


def make_lines(partner: Partner, count: int, area_code: str = "415") -> list[Line]:
    """Active lines in the partner's Available pool, delivered through an order."""
    numbers = fresh_numbers(count, area_code)
    inventory_import(principal=SYSTEM, csv_text="number\n" + "\n".join(numbers) + "\n")
    order = line_order_create(principal=SYSTEM, partner=partner, quantity=count)
    return list(Line.objects.filter(order=order).order_by("pk"))


def make_user(partner: Partner, email: str, role: str, password: str = "demo-pass-123"):
    return user_create(principal=SYSTEM, partner=partner, email=email, role=role, password=password)
