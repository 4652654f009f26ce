"""``portal createstaff``: a user of the provider's staff."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from portal.accounts.services import staff_create
from portal.core.commands import cli_principal, domain_errors, generate_password


class Command(BaseCommand):
    help = (
        "Create a provider staff user: sees every partner, approves requests, imports "
        "numbers, runs billing. Without --password a random one is generated and printed once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--email", required=True, help="The staff member's email address.")
        parser.add_argument("--password", help="Password (default: generated and printed).")

    def handle(self, *args: Any, email: str, password: str | None, **options: Any) -> None:
        generated = password is None
        if generated:
            password = generate_password()
        with domain_errors():
            user = staff_create(
                principal=cli_principal("createstaff"), email=email, password=password
            )
        self.stdout.write(f"Created staff user {user.email}.")
        if generated:
            self.stdout.write(f"Password (shown once): {password}")
