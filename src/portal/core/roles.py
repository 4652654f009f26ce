"""The partner roles of domain §1 (and the partner's client, domain §8.2)."""

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MANAGER = "manager", "Manager"
    BILLING = "billing", "Billing"
    VIEWER = "viewer", "Viewer"
    # A partner's own customer: reads only the sub-accounts granted to it (the principal's
    # ``sub_account_ids``), never anything of the partner as a whole; changes nothing.
    CLIENT = "client", "Client"


PARTNER_STAFF_ROLES = frozenset({Role.ADMIN, Role.MANAGER, Role.BILLING, Role.VIEWER})
"""The partner's own people: every role but :attr:`Role.CLIENT`."""
