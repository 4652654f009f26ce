"""Filters of the Audit log page."""

from __future__ import annotations

from django import forms

from portal.audit.describe import ACTION_WORDS

# Every action any service records, by its words (audit.describe.ACTION_WORDS).
ACTIONS = [
    ("", "All actions"),
    *sorted(ACTION_WORDS.items(), key=lambda item: item[1]),
]


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(label="Action", choices=ACTIONS, required=False)
    sub_account = forms.IntegerField(
        label="Sub-account id", required=False, min_value=1, widget=forms.HiddenInput
    )
    line = forms.IntegerField(
        label="Line id", required=False, min_value=1, widget=forms.HiddenInput
    )
