"""``portal createapikey``: a bearer key for the REST API."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal.accounts.services import api_key_create
from portal.core.commands import cli_principal, domain_errors
from portal.core.roles import Role
from portal.partners.selectors import partner_by_slug


class Command(BaseCommand):
    help = (
        "Create an API key and print it on the last line; it is shown once and stored "
        "hashed. Either a partner key (--partner SLUG --role ROLE) or a staff key (--staff), "
        "which is also what the messaging platform uses to post message events. A client key "
        "(--role client) reads only the sub-accounts given with --sub-accounts ID[,ID...]. "
        f"Roles: {', '.join(Role.values)}."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--partner", metavar="SLUG", help="Slug of the partner the key acts in."
        )
        parser.add_argument(
            "--role", help=f"The key's role in the partner: {', '.join(Role.values)}."
        )
        parser.add_argument(
            "--sub-accounts",
            metavar="ID[,ID...]",
            help="For --role client: the ids of the partner's sub-accounts the key reads.",
        )
        parser.add_argument(
            "--staff", action="store_true", help="A provider staff key (no partner, no role)."
        )
        parser.add_argument(
            "--name", required=True, help="What the key is for, e.g. 'CRM integration'."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug, role, staff, name = (
            options["partner"],
            options["role"],
            options["staff"],
            options["name"],
        )
        sub_accounts = options["sub_accounts"]
        if staff and (slug or role or sub_accounts):
            raise CommandError(
                "A staff key has no partner, no role and no sub-accounts: "
                "drop --partner/--role/--sub-accounts."
            )
        if not staff and not (slug and role):
            raise CommandError("Give --partner SLUG and --role ROLE, or --staff.")
        principal = cli_principal("createapikey")
        with domain_errors():
            if staff:
                issued = api_key_create(principal=principal, name=name, staff=True)
                what = "staff key"
            else:
                partner = partner_by_slug(slug)
                issued = api_key_create(
                    principal=principal.acting_for(partner.pk),
                    name=name,
                    role=role,
                    sub_account_ids=sub_accounts,
                )
                what = f"{issued.api_key.role} key for partner {partner.slug}"
                if sub_accounts:
                    granted = sorted(issued.api_key.sub_accounts.values_list("pk", flat=True))
                    what += f" (sub-accounts {', '.join(map(str, granted))})"
        self.stdout.write(
            f"Created {what} {issued.api_key.name!r} (prefix {issued.api_key.prefix}). "
            "It is shown once; store it now:"
        )
        self.stdout.write(issued.raw)
