"""Forms for line pages."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.urls import reverse_lazy

from portal.accounts.principal import Principal
from portal.core.errors import NotFound
from portal.core.tenancy import db_id
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus

# Up to this many choices the sub-account is a plain <select>; beyond, a searchable field.
SELECT_LIMIT = 300


def sub_account_choices(
    principal: Principal,
    *,
    include_pool: bool,
    exclude_id: int | None = None,
    active_only: bool = True,
) -> list[tuple[str, str]] | None:
    """Choices for "Sub-account", or None when there are too many for a select."""
    qs = SubAccount.objects.visible_to(principal)
    qs = (
        qs.filter(status=SubAccountStatus.ACTIVE)
        if active_only
        else qs.exclude(status=SubAccountStatus.DELETED)
    )
    if not include_pool:
        qs = qs.filter(kind=SubAccountKind.STANDARD)
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    rows = list(qs.listed_order().values_list("pk", "name", "kind")[: SELECT_LIMIT + 1])
    if len(rows) > SELECT_LIMIT:
        return None
    return [("", "Choose a sub-account…")] + [
        (str(pk), "Available" if kind == SubAccountKind.AVAILABLE else name)
        for pk, name, kind in rows
    ]


def resolve_sub_account(principal: Principal, value: str) -> int:
    """The id behind a "Sub-account" value: an id from a select, or an exact name typed
    in a search field (any case), among the principal's own active sub-accounts: another
    partner's name is as unknown as a made-up one."""
    value = (value or "").strip()
    if value.isdigit():
        return int(value)
    if value.casefold() == "available":
        match = SubAccount.objects.visible_to(principal).filter(kind=SubAccountKind.AVAILABLE)
    else:
        match = SubAccount.objects.visible_to(principal).filter(
            name__iexact=value, status=SubAccountStatus.ACTIVE
        )
    found = match.values_list("pk", flat=True).first()
    if found is None:
        raise NotFound(f"No active sub-account is named “{value}”.")
    return found


def suggest(field: forms.Field, list_id: str) -> None:
    """Turn a text "Sub-account" field into a search box with name suggestions."""
    field.help_text = "Type part of the name and pick a suggestion."
    field.widget.attrs.update(
        {
            "list": list_id,
            "autocomplete": "off",
            "hx-get": reverse_lazy("partners:sub_account_options") + f"?list={list_id}",
            "hx-trigger": "input changed delay:250ms",
            "hx-target": f"#{list_id}",
            "hx-swap": "outerHTML",
        }
    )


class SubAccountChoiceMixin(forms.Form):
    """A "Sub-account" field: a select for most partners, a name field for huge ones.

    Dialog forms use their own id prefix: the page behind may have a "Sub-account"
    filter, and a label must point at the field in the dialog.
    """

    sub_account = forms.CharField(label="Sub-account")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "dialog_%s")
        super().__init__(*args, **kwargs)

    def setup_choices(self, choices: list[tuple[str, str]] | None) -> None:
        if choices is not None:
            self.fields["sub_account"] = forms.ChoiceField(label="Sub-account", choices=choices)
        else:
            suggest(self.fields["sub_account"], "sub-account-options")


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
