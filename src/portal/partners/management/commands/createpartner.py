"""``portal createpartner``: a partner, its Available pool and its first admin."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from portal.accounts.services import user_create
from portal.core.commands import cli_principal, domain_errors, generate_password, money
from portal.core.roles import Role
from portal.partners.services import partner_create


class Command(BaseCommand):
    help = (
        "Create a partner (reseller) with its Available pool and an admin user who can "
        "log in. Without --password a random one is generated and printed once. "
        "Prints the partner's slug on the last line."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--name", required=True, help="The partner's name.")
        parser.add_argument(
            "--owner-email", required=True, metavar="EMAIL", help="Email of the admin user."
        )
        parser.add_argument(
            "--password", help="The admin's password (default: generated and printed)."
        )
        parser.add_argument("--currency", help="ISO 4217 currency code (default: USD).")
        parser.add_argument("--timezone", help="IANA timezone, e.g. Europe/Paris (default: UTC).")
        parser.add_argument(
            "--line-price",
            metavar="PRICE",
            help="Price per line per month, e.g. 50.00 (default: 50.00).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        principal = cli_principal("createpartner")
        settings = {
            key: options[key]
            for key in ("currency", "timezone", "line_price")
            if options[key] is not None
        }
        password = options["password"]
        generated = password is None
        if generated:
            password = generate_password()
        with domain_errors(), transaction.atomic():
            partner = partner_create(principal=principal, name=options["name"], **settings)
            user = user_create(
                principal=principal.acting_for(partner.pk),
                email=options["owner_email"],
                role=Role.ADMIN,
                password=password,
            )
        self.stdout.write(
            f"Created partner {partner.name!r} ({partner.currency}, {partner.timezone}, "
            f"{money(partner.line_price)} per line per month) and its Available pool."
        )
        self.stdout.write(f"Admin user: {user.email}")
        if generated:
            self.stdout.write(f"Password (shown once): {password}")
        self.stdout.write(partner.slug)
