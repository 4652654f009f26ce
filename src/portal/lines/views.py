"""Line pages: the Lines list, Add new line, Move (one or many), Disconnect, Request lines."""

from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.accounts.policies import require
from portal.core.errors import DomainError
from portal.core.phone import display_number
from portal.core.principal import Principal
from portal.core.tenancy import db_id
from portal.lines import selectors, services
from portal.lines.forms import AssignForm, LineFilterForm, MoveForm, OrderForm, parse_seen
from portal.lines.models import LineStatus
from portal.lines.policies import can_cancel_order, can_change_lines, can_order_lines
from portal.partners.choices import resolve_sub_account, sub_account_choices, suggest
from portal.partners.models import SubAccount, SubAccountStatus
from portal.web.decorators import portal_view
from portal.web.dialogs import back_url, dialog_done, render_dialog
from portal.web.forms import attach_error

PAGE_SIZE = 50
_dialog = partial(render_dialog, section="lines")


@portal_view
def line_list(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    filters = LineFilterForm(request.GET or None)
    choices = sub_account_choices(principal, include_pool=True)
    if choices is not None:
        filters.fields["sub_account"] = forms.ChoiceField(
            label="Sub-account", required=False, choices=[("", "All sub-accounts"), *choices[1:]]
        )
    else:
        suggest(filters.fields["sub_account"], "filter-sub-account-options")
    q = status = sub_value = ""
    if filters.is_valid():
        q = filters.cleaned_data["q"]
        status = filters.cleaned_data["status"]
        sub_value = filters.cleaned_data["sub_account"]
    sub_account_id = resolve_sub_account(principal, sub_value) if sub_value else None
    criteria = {
        "principal": principal,
        "sub_account_id": sub_account_id,
        "status": None if status == "all" else (status or LineStatus.ACTIVE),
        "search": q or None,
    }
    lines = selectors.line_list(**criteria).select_related("sub_account")
    paginator = Paginator(lines, PAGE_SIZE)
    known = selectors.line_list_count(**criteria)
    if known is not None:
        paginator.count = known  # from the line counts: no scan of the partner's lines
    page_obj = paginator.get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    context = {
        "active_section": "lines",
        "filters": filters,
        "page_obj": page_obj,
        "query_prefix": (params.urlencode() + "&") if params else "",
        "can_change": can_change_lines(principal),
        "can_order": can_order_lines(principal) and principal.scope_partner_id is not None,
    }
    template = "lines/line_list.html"
    if request.htmx and request.htmx.target == "results":  # type: ignore[attr-defined]
        template += "#results"
    return render(request, template, context)


@portal_view
@require_http_methods(["GET", "POST"])
def line_assign(request: HttpRequest, line_id: int) -> HttpResponse:
    """ "Add new line": put a line from Available to work in a sub-account."""
    principal = request.principal  # type: ignore[attr-defined]
    line = selectors.line_get(principal=principal, line_id=line_id)
    require(can_change_lines(principal), "Your role may not assign lines.")
    form = AssignForm(request.POST or None)
    form.setup_choices(sub_account_choices(principal, include_pool=False))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            assigned = services.line_assign(
                principal=principal,
                line_id=line.pk,
                sub_account_id=resolve_sub_account(principal, data["sub_account"]),
                label=data["label"],
                user_name=data["user_name"],
                user_email=data["user_email"],
                daily_limit=data["daily_limit"],
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            target = assigned.sub_account.display_name
            messages.success(request, f"Line {line.number} added to {target}.")
            return dialog_done(request, back_url(request, reverse("lines:line_list")))
    return _dialog(
        request,
        "lines/assign_dialog.html",
        {"form": form, "line": line},
        status=422 if form.errors else 200,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def line_move(request: HttpRequest, line_id: int) -> HttpResponse:
    """Move one line. The page behind sends where it showed the line (``?from=``), the
    dialog carries it to the service, and a line moved meanwhile is refused there."""
    principal = request.principal  # type: ignore[attr-defined]
    line = selectors.line_get(principal=principal, line_id=line_id)
    require(can_change_lines(principal), "Your role may not move lines.")
    seen_id = db_id(request.GET.get("from")) or line.sub_account_id
    form = MoveForm(request.POST or None, initial={"from_sub_account": seen_id})
    form.setup_choices(
        sub_account_choices(principal, include_pool=True, exclude_id=line.sub_account_id)
    )
    stale = ""
    if request.method == "GET" and seen_id != line.sub_account_id:
        stale = selectors.line_whereabouts(principal, [line])[line.pk]
    if request.method == "POST" and form.is_valid():
        try:
            moved = services.line_move(
                principal=principal,
                line_id=line.pk,
                sub_account_id=resolve_sub_account(principal, form.cleaned_data["sub_account"]),
                from_sub_account_id=form.cleaned_data["from_sub_account"] or None,
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            target = moved.sub_account
            messages.success(request, f"Line {line.number} moved to {target.display_name}.")
            return dialog_done(request, back_url(request, reverse("lines:line_list")))
    return _dialog(
        request,
        "lines/move_dialog.html",
        {"form": form, "line": line, "stale": stale},
        status=422 if form.errors else 200,
    )


# The selected lines a Move dialog names by number; beyond, it says how many more.
SHOWN_NUMBERS = 10


def _destination(principal: Principal, value: Any, *, by_name: bool) -> dict[str, str]:
    """The "Sub-account" preselected by ``?to=`` (an active sub-account of the principal's;
    anything else preselects nothing): its id for a select, its name for a name field."""
    key = db_id(value)
    if key is None:
        return {}
    found = (
        SubAccount.objects.visible_to(principal)
        .filter(pk=key, status=SubAccountStatus.ACTIVE)
        .only("pk", "name", "kind")
        .first()
    )
    if found is None:
        return {}
    return {"sub_account": found.display_name if by_name else str(found.pk)}


def bulk_move_dialog(
    request: HttpRequest,
    *,
    line_ids: list[Any],
    seen: dict[int, int],
    destination: Any = None,
    note: str = "",
) -> HttpResponse:
    """The Move dialog for ``line_ids`` (each seen where ``seen`` says), the "Sub-account"
    choice preselected with ``destination`` and the first lines named: what the Lines
    page's selection opens, and what other pages open with lines they chose (the
    capacity advice of Analytics). Posting it moves them through :func:`line_move_bulk`."""
    principal = request.principal  # type: ignore[attr-defined]
    require(can_change_lines(principal), "Your role may not move lines.")
    choices = sub_account_choices(principal, include_pool=True)
    initial = _destination(principal, destination, by_name=choices is None)
    form = MoveForm(initial=initial)
    form.setup_choices(choices)
    if not line_ids:
        return _dialog(
            request,
            "lines/bulk_move_dialog.html",
            {"form": form, "line_ids": [], "nothing_selected": True, "note": note},
        )
    numbers = list(
        selectors.line_list(principal=principal)
        .filter(pk__in=[db_id(i) for i in line_ids[:SHOWN_NUMBERS]])
        .values_list("number", flat=True)
    )
    return _dialog(
        request,
        "lines/bulk_move_dialog.html",
        {
            "form": form,
            "line_ids": line_ids,
            "seen": seen,
            "numbers": [display_number(n) for n in numbers],
            "more": max(0, len(line_ids) - len(numbers)),
            "note": note,
        },
    )


@portal_view
@require_http_methods(["GET", "POST"])
def line_move_bulk(request: HttpRequest) -> HttpResponse:
    """Move the selected lines together (all or nothing). Opened with ``line_ids`` (and
    ``seen`` pairs) from the Lines page's selection; ``to`` (a sub-account id) preselects
    where they go."""
    principal = request.principal  # type: ignore[attr-defined]
    require(can_change_lines(principal), "Your role may not move lines.")
    source = request.POST if request.method == "POST" else request.GET
    line_ids = [v for v in source.getlist("line_ids") if v.isdigit()]
    # Where the Lines page showed each line when it was drawn (its rows carry
    # "line:sub-account" pairs); the dialog carries them on to the service.
    seen = parse_seen(source.getlist("seen"), line_ids)
    if "sub_account" not in request.POST:
        return bulk_move_dialog(request, line_ids=line_ids, seen=seen, destination=source.get("to"))
    form = MoveForm(request.POST)
    form.setup_choices(sub_account_choices(principal, include_pool=True))
    if not line_ids:
        return bulk_move_dialog(request, line_ids=[], seen={})
    if form.is_valid():
        try:
            result = services.line_move_bulk(
                principal=principal,
                line_ids=line_ids,
                sub_account_id=resolve_sub_account(principal, form.cleaned_data["sub_account"]),
                seen_in=seen,
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            note = f" ({result.already_there} were already there)" if result.already_there else ""
            messages.success(
                request, f"Moved {result.moved} line{'s' if result.moved != 1 else ''}{note}."
            )
            return dialog_done(request, back_url(request, reverse("lines:line_list")))
    return _dialog(
        request,
        "lines/bulk_move_dialog.html",
        {"form": form, "line_ids": line_ids, "seen": seen},
        status=422 if form.errors else 200,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def line_disconnect(request: HttpRequest, line_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    line = selectors.line_get(principal=principal, line_id=line_id)
    require(can_change_lines(principal), "Your role may not disconnect lines.")
    error = ""
    if request.method == "POST":
        if request.POST.get("confirm") != line.number:
            error = f"Type {line.number} to confirm."
        else:
            try:
                services.line_disconnect(principal=principal, line_id=line.pk)
            except DomainError as exc:
                error = str(exc.detail)
            else:
                messages.success(request, f"Line {line.number} disconnected.")
                return dialog_done(request, back_url(request, reverse("lines:line_list")))
    return _dialog(
        request,
        "lines/disconnect_dialog.html",
        {"line": line, "error": error},
        status=422 if error else 200,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def line_orders(request: HttpRequest) -> HttpResponse:
    """ "Request lines": the order form and the partner's orders with their status."""
    principal = request.principal  # type: ignore[attr-defined]
    can_order = can_order_lines(principal) and principal.scope_partner_id is not None
    form = OrderForm(request.POST or None)
    if request.method == "POST":
        require(can_order, "Your role may not request lines.")
        if form.is_valid():
            try:
                order = services.line_order_create(
                    principal=principal,
                    quantity=form.cleaned_data["quantity"],
                    area_code=form.cleaned_data["area_code"],
                    submission_key=form.cleaned_data["submission"] or None,
                )
            except DomainError as exc:
                attach_error(form, exc)
            else:
                if getattr(order, "replayed", False):
                    text = f"This request was already sent (request #{order.pk}); nothing new."
                elif order.fulfilled_count == order.quantity:
                    text = f"{order.quantity} line(s) delivered to Available."
                elif order.fulfilled_count:
                    text = (
                        f"{order.fulfilled_count} of {order.quantity} lines delivered to "
                        "Available; the rest follow when numbers arrive."
                    )
                else:
                    text = (
                        "Request received. Lines appear in Available as soon as numbers "
                        "are in stock."
                    )
                messages.success(request, text)
                return redirect("lines:line_orders")
    orders = selectors.line_order_list(principal=principal)
    page_obj = Paginator(orders, PAGE_SIZE).get_page(request.GET.get("page"))
    for order in page_obj:
        order.cancellable = order.status in ("pending", "partially_fulfilled") and (
            can_cancel_order(principal, order)
        )
    return render(
        request,
        "lines/orders.html",
        {"form": form, "page_obj": page_obj, "can_order": can_order, "active_section": "lines"},
        status=422 if form.errors else 200,
    )


@portal_view
@require_POST
def line_order_cancel(request: HttpRequest, order_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    order = services.line_order_cancel(principal=principal, order_id=order_id)
    messages.success(request, f"Order {order.pk} cancelled.")
    return redirect("lines:line_orders")
