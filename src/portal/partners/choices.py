"""The "Sub-account" choice of every form: a select for most partners, a name field with
suggestions for a partner with more than a select holds, resolved within the partner.

Used by lines' dialogs, the requests' forms, the audit log's filter and staff billing:
it sits with the sub-accounts it lists, below all of them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.urls import reverse_lazy

from portal.core.errors import NotFound
from portal.core.principal import Principal
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
