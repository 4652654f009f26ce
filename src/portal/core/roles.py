"""The partner roles of domain §1."""

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MANAGER = "manager", "Manager"
    BILLING = "billing", "Billing"
    VIEWER = "viewer", "Viewer"
