"""What every page's frame needs: who is acting, for which partner, and the navigation."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from portal.accounts.policies import can_manage_users, can_read_audit
from portal.analytics.policies import can_read_analytics
from portal.billing.policies import can_read_billing_summary, can_read_invoices
from portal.web.principal import partner_for, principal_for
from portal.workflows.policies import can_read_requests


def portal(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    principal = principal_for(request)
    partner = partner_for(request)
    nav = [
        ("Sub-accounts", "partners:sub_account_list", "sub-accounts"),
        ("Lines", "lines:line_list", "lines"),
    ]
    if can_read_billing_summary(principal):
        nav.append(("Billing", "billing:summary", "billing"))
    if can_read_invoices(principal):
        nav.append(("Invoices", "billing:invoice_list", "invoices"))
    if can_read_analytics(principal):
        nav.append(("Analytics", "analytics:overview", "analytics"))
    if principal.is_client:
        # A client's statements are a section of their own (others find them under Billing).
        nav.append(("Statements", "billing:statement_list", "statements"))
    if can_read_requests(principal):
        nav.append(("Requests", "workflows:request_list", "requests"))
    if can_read_audit(principal):
        nav.append(("Audit log", "audit:audit_log", "audit"))
    if can_manage_users(principal) and principal.scope_partner_id is not None:
        nav.append(("Settings", "settings:users", "settings"))
    if principal.is_staff:
        nav.append(("Staff", "staff:partner_list", "staff"))
    nav.append(("Your account", "accounts:password_change", "account"))
    return {
        "principal": principal,
        "current_partner": partner,
        "role_label": "Provider staff" if principal.is_staff else principal.role_name.title(),
        "nav_items": nav,
    }
