"""The "Sub-account" choice of every form: a select for most partners, a name field with
suggestions for a partner with more than a select holds, resolved within the partner.

Used by lines' dialogs, the requests' forms, the audit log's filter and staff billing:
it sits with the sub-accounts it lists, below all of them. Each picker offers the
sub-accounts in some ``statuses`` (``ACTIVE`` to act on them, ``NOT_PURGED`` to look
up their history) of one partner, the principal's (staff: the partner they act for);
:func:`name_suggestions` lists them as the name is typed and
:func:`resolve_sub_account` turns the name typed into an id among the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy

from portal.core.errors import NotFound
from portal.core.principal import Principal
from portal.core.text import can_be_stored
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus

# Up to this many choices the sub-account is a plain <select>; beyond, a searchable field.
SELECT_LIMIT = 300
# Names suggested as a name is typed.
SUGGESTIONS = 20

# Which sub-accounts a picker offers: those one may act on, or every one with a history.
ACTIVE: tuple[str, ...] = (SubAccountStatus.ACTIVE,)
NOT_PURGED: tuple[str, ...] = (
    SubAccountStatus.ACTIVE,
    SubAccountStatus.MERGED,
    SubAccountStatus.PENDING_DELETION,
)


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


def resolve_sub_account(
    principal: Principal,
    value: str,
    *,
    statuses: Sequence[str] = ACTIVE,
    ids: bool = True,
) -> int:
    """The id behind a "Sub-account" value: an id from a select (digits, when ``ids``; a
    field that only ever holds names passes ``ids=False``, so a name of digits is a name),
    or an exact name typed in a search field (any case; "Available" is the pool), among
    the principal's own sub-accounts in ``statuses``: another partner's name is as unknown
    as a made-up one. :class:`NotFound` otherwise ("No active sub-account is named …" for
    ``ACTIVE``, "No sub-account is named …" for a wider choice)."""
    value = (value or "").strip()
    if ids and value.isdigit():
        return int(value)
    among = SubAccount.objects.visible_to(principal).filter(status__in=list(statuses))
    if value.casefold() == "available":
        match = among.filter(kind=SubAccountKind.AVAILABLE)
    else:
        match = among.filter(name__iexact=value)
    found = match.values_list("pk", flat=True).first()
    if found is None:
        what = "active sub-account" if set(statuses) == set(ACTIVE) else "sub-account"
        raise NotFound(f"No {what} is named “{value}”.")
    return found


def name_suggestions(
    request: HttpRequest,
    principal: Principal,
    *,
    statuses: Sequence[str],
    lists: Sequence[str],
    field: str = "sub_account",
) -> HttpResponse:
    """The body of every sub-account search field's suggestions endpoint: a ``<datalist>``
    of up to :data:`SUGGESTIONS` names of the principal's sub-accounts in ``statuses``
    that contain the text typed in ``field`` (any case), Available first then by name,
    drawn from the sub-accounts :func:`resolve_sub_account` accepts. ``?list=`` names the
    page's datalist to replace, one of ``lists`` (the first otherwise). The endpoint itself
    says who may ask and narrows the principal to whose partner."""
    list_id = request.GET.get("list", "")
    if list_id not in lists:
        list_id = lists[0]
    term = (request.GET.get(field) or "").strip()
    names: list[str] = []
    if term and can_be_stored(term):
        matches = SubAccount.objects.visible_to(principal).filter(
            status__in=list(statuses), name__icontains=term
        )
        names = list(matches.listed_order().values_list("name", flat=True)[:SUGGESTIONS])
    return render(request, "partners/_sub_account_options.html", {"names": names, "id": list_id})


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
