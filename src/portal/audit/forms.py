"""Filters of the Audit log page."""

from __future__ import annotations

from django import forms

ACTIONS = [
    ("", "All actions"),
    ("sub_account.create", "Sub-account created"),
    ("sub_account.update", "Sub-account changed"),
    ("line.activate", "Line activated"),
    ("line.assign", "Line added to a sub-account"),
    ("line.move", "Line moved"),
    ("line.update", "Line details changed"),
    ("line.disconnect", "Line disconnected"),
    ("line_order.create", "Lines requested"),
    ("line_order.fulfil", "Line request fulfilled"),
    ("line_order.cancel", "Line request cancelled"),
    ("partner.create", "Partner created"),
    ("user.create", "User added"),
    ("user.role_change", "User's role changed"),
    ("user.deactivate", "User deactivated"),
    ("user.reactivate", "User reactivated"),
    ("user.password_set", "Password set"),
    ("api_key.create", "API key created"),
    ("api_key.revoke", "API key revoked"),
]


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(label="Action", choices=ACTIONS, required=False)
    sub_account = forms.IntegerField(
        label="Sub-account id", required=False, min_value=1, widget=forms.HiddenInput
    )
    line = forms.IntegerField(
        label="Line id", required=False, min_value=1, widget=forms.HiddenInput
    )
