"""The partner roles of SPEC §1."""

from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    MANAGER = "manager", "Manager"
    BILLING = "billing", "Billing"
    VIEWER = "viewer", "Viewer"
