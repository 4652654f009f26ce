"""The Django admin, installed with the portal's site (its own module: an app's apps.py
may declare only one default configuration, and this one imports Django's)."""

from django.contrib.admin.apps import AdminConfig


class PortalAdminConfig(AdminConfig):
    """``django.contrib.admin`` with :class:`~portal.accounts.admin_site.PortalAdminSite`."""

    default_site = "portal.accounts.admin_site.PortalAdminSite"
