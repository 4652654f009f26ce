"""Forms for line pages."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms

from portal.core.tenancy import db_id
from portal.partners.choices import SubAccountChoiceMixin


class AssignForm(SubAccountChoiceMixin):
    label = forms.CharField(
        label="Label",
        max_length=200,
        help_text="What this line is for, e.g. “Front desk” or “Rep – Jane”.",
    )
    user_name = forms.CharField(label="User name", required=False, max_length=200)
    user_email = forms.CharField(
        label="User email", required=False, max_length=300, widget=forms.EmailInput()
    )
    daily_limit = forms.IntegerField(
        label="Daily limit",
        required=False,
        min_value=1,
        max_value=100_000,
        help_text="New conversations per day. Leave empty for the partner default.",
    )


class MoveForm(SubAccountChoiceMixin):
    # Where the line was when the page behind the dialog was drawn: the move is refused
    # if it is not there any more (someone moved it meanwhile). Not required, so a
    # hand-made request without it moves the line from wherever it is, like the API.
    # Text, validated by the service: a hidden field's own error would show nowhere.
    from_sub_account = forms.CharField(required=False, widget=forms.HiddenInput)


def parse_seen(values: list[str], line_ids: list[str]) -> dict[int, int]:
    """``line:sub-account`` pairs (where the page showed each line) for the chosen lines.

    Anything that is not such a pair of ids is ignored: that line is then moved from
    wherever it is, as without the pair.
    """
    wanted = {i for i in map(db_id, line_ids) if i is not None}
    seen: dict[int, int] = {}
    for value in values:
        line_text, _, sub_account_text = value.partition(":")
        line, sub_account = db_id(line_text), db_id(sub_account_text)
        if line is not None and line in wanted and sub_account is not None:
            seen[line] = sub_account
    return seen


class OrderForm(forms.Form):
    """One submission, one order: ``submission`` is a one-time key drawn with the form,
    which the service uses to make the order once however often the form is posted."""

    quantity = forms.IntegerField(label="Quantity", min_value=1, max_value=1000, initial=1)
    area_code = forms.CharField(
        label="Area code",
        required=False,
        max_length=5,
        help_text="e.g. 415 for San Francisco numbers.",
    )
    submission = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial["submission"] = secrets.token_urlsafe(24)


class LineFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=120)
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Active"), ("disconnected", "Disconnected"), ("all", "All")],
    )
    sub_account = forms.CharField(label="Sub-account", required=False)
