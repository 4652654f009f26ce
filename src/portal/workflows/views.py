"""Request pages: the partner's Requests list, a request's page with its live progress,
the merge flow (preview, typed confirmation) and the deletion flow (line disposition).

Every change calls a service; a refusal is shown in place (forms) or as the error
page/partial that ``portal_view`` renders.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.accounts.policies import require
from portal.audit.describe import describe_events
from portal.core.errors import DomainError, Invalid, NotFound
from portal.core.tenancy import db_id
from portal.core.text import names_match
from portal.partners.choices import SUGGESTIONS, resolve_sub_account
from portal.partners.models import Partner, SubAccount, SubAccountKind
from portal.partners.policies import unavailable_reason
from portal.partners.selectors import sub_account_get
from portal.partners.views import render_unavailable
from portal.web.decorators import portal_view
from portal.web.dialogs import back_url
from portal.web.forms import attach_error
from portal.workflows import selectors
from portal.workflows.forms import (
    MAX_CHOICES,
    DecisionForm,
    DeletionRequestForm,
    MergeRequestForm,
    confirm_name_error,
)
from portal.workflows.models import DeletionStatus, MergeStatus
from portal.workflows.policies import (
    can_cancel_request,
    can_decide,
    can_make_requests,
    can_restore,
)
from portal.workflows.services import deletions, merges

PAGE_SIZE = 25

# How often a request's page asks whether it changed, by status: while it waits for a
# decision or moves lines a reader wants to see it happen; a failed merge waits for staff
# to resume it (rarely soon); a final state never changes again and is not asked about.
_POLL_EVERY = {
    MergeStatus.PENDING_APPROVAL: "2s",
    MergeStatus.APPROVED: "2s",
    MergeStatus.PROCESSING: "2s",
    MergeStatus.FAILED: "10s",
}
_DELETION_POLL_EVERY = {DeletionStatus.PENDING_APPROVAL: "2s"}
# A suggestion list of the request forms → the field whose typed text it completes.
_OPTION_LISTS = {
    "target-options": "target_id",
    "also-merge-options": "also_merge_name",
    "move-to-options": "move_to_id",
}


def _context(**extra: Any) -> dict[str, Any]:
    return {"active_section": "requests", **extra}


@portal_view
def request_list(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    merges = selectors.merge_request_list(principal=principal)
    deletions = selectors.deletion_request_list(principal=principal)
    return render(
        request,
        "workflows/request_list.html",
        _context(
            merges=Paginator(merges, PAGE_SIZE).get_page(request.GET.get("merges")),
            deletions=Paginator(deletions, PAGE_SIZE).get_page(request.GET.get("deletions")),
            can_request=can_make_requests(principal),
        ),
    )


def _actions(principal: Any, req: Any) -> dict[str, bool]:
    partner = Partner.objects.get(pk=req.partner_id)
    pending = req.status == "pending_approval"
    return {
        "can_decide": pending and can_decide(principal, req, partner),
        "can_cancel": pending and can_cancel_request(principal),
        "can_restore": req.status == DeletionStatus.SCHEDULED and can_restore(principal),
    }


def _unchanged(request: HttpRequest, req: Any) -> bool:
    """A poll from a page already showing this status and progress: nothing to swap."""
    return request.GET.get("seen") == req.status and request.GET.get("moved") == str(
        getattr(req, "lines_moved", 0)
    )


def _request_page(
    request: HttpRequest, req: Any, template: str, name: str, poll_every: str | None
) -> HttpResponse:
    """A request's page, or for its poller (``?seen=``) 204 until it changed, then the live
    region: status, details, progress, actions and history at once."""
    principal = request.principal  # type: ignore[attr-defined]
    polled = "seen" in request.GET
    if polled and _unchanged(request, req):
        return HttpResponse(status=204)
    context = _context(
        **{name: req},
        poll_every=poll_every,
        history=describe_events(
            principal,
            selectors.request_history(principal=principal, kind=req.kind, request_id=req.pk),
        ),
        decision_form=DecisionForm(),
        **_actions(principal, req),
    )
    return render(request, template + "#live" if polled else template, context)


@portal_view
def merge_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    merge = selectors.merge_request_get(principal=principal, request_id=request_id)
    return _request_page(
        request, merge, "workflows/merge_detail.html", "merge", _POLL_EVERY.get(merge.status)
    )


@portal_view
def deletion_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    deletion = selectors.deletion_request_get(principal=principal, request_id=request_id)
    return _request_page(
        request,
        deletion,
        "workflows/deletion_detail.html",
        "deletion",
        _DELETION_POLL_EVERY.get(deletion.status),
    )


# --- the merge flow --------------------------------------------------------------------


def _resolved(form: Any, field: str, principal: Any, value: str) -> int | None:
    """A typed sub-account name's id, or None with the reason shown under the field."""
    try:
        return resolve_sub_account(principal, value)
    except NotFound as exc:
        form.add_error(field, str(exc.detail))
        return None


def _merge_form(request: HttpRequest, principal: Any, source: Any) -> MergeRequestForm:
    """The merge form: selects for most partners; for one with more eligible sub-accounts
    than a select holds, the target typed by name and other sources added one name at a
    time (each preview resolves the typed name and keeps it as a ticked box)."""
    eligible = selectors.merge_candidates(principal=principal, exclude_id=source.pk)
    candidates = selectors.choices_or_none(eligible, MAX_CHOICES)
    if candidates is not None or request.method != "POST":
        return MergeRequestForm(request.POST or None, candidates=candidates)
    data = request.POST.copy()
    chosen_ids = {i for i in map(db_id, data.getlist("also_merge")) if i is not None}
    chosen = list(
        SubAccount.objects.visible_to(principal)
        .filter(pk__in=chosen_ids, kind=SubAccountKind.STANDARD)
        .order_by(Lower("name"), "id")
    )
    return MergeRequestForm(data, candidates=None, chosen=chosen)


@portal_view
@require_http_methods(["GET", "POST"])
def merge_new(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    """Choose target (and other sources) → preview → type the target's name → request."""
    principal = request.principal  # type: ignore[attr-defined]
    require(can_make_requests(principal), "Your role may not request merges.")
    source = sub_account_get(principal=principal, sub_account_id=sub_account_id)
    reason = unavailable_reason(source, "merge")
    if reason and request.method == "GET":
        return render_unavailable(request, source, "Request merge", reason)
    form = _merge_form(request, principal, source)
    preview = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        also = [int(i) for i in data["also_merge"]]
        confirming = "confirm" in request.POST
        added = data.get("also_merge_name", "")
        if added:
            # A name typed to add: resolved, then shown ticked; a preview, not a request.
            added_id = _resolved(form, "also_merge_name", principal, added)
            if added_id is not None:
                form = _with_added_source(request, principal, source, also, added_id)
                also = [*also, added_id] if added_id not in also else also
            confirming = False
        target_id = _resolved(form, "target_id", principal, data["target_id"])
        if target_id is not None and not form.errors:
            try:
                preview = merges.merge_request_preview(
                    principal=principal, source_ids=[source.pk, *also], target_id=target_id
                )
                if confirming:
                    if not names_match(data["confirm_name"], preview.target.name):
                        form.add_error("confirm_name", confirm_name_error(preview.target.name))
                    else:
                        merge = merges.merge_request_create(
                            principal=principal,
                            source_ids=[source.pk, *also],
                            target_id=target_id,
                            reason=data["reason"],
                        )
                        messages.success(request, f"Merge request #{merge.pk} sent for approval.")
                        return redirect("workflows:merge_detail", request_id=merge.pk)
            except DomainError as exc:
                attach_error(form, exc)
                preview = None
    return render(
        request,
        "workflows/merge_form.html",
        _context(source=source, form=form, preview=preview),
        status=422 if form.errors else 200,
    )


def _with_added_source(
    request: HttpRequest, principal: Any, source: Any, also: list[int], added_id: int
) -> MergeRequestForm:
    """The searching merge form redrawn with the typed source ticked and its box emptied."""
    data = request.POST.copy()
    data.setlist("also_merge", [str(i) for i in dict.fromkeys([*also, added_id])])
    data["also_merge_name"] = ""
    chosen = list(
        SubAccount.objects.visible_to(principal)
        .filter(pk__in=[*also, added_id], kind=SubAccountKind.STANDARD)
        .order_by(Lower("name"), "id")
    )
    form = MergeRequestForm(data, candidates=None, chosen=chosen)
    form.is_valid()
    return form


# --- the deletion flow -----------------------------------------------------------------


@portal_view
@require_http_methods(["GET", "POST"])
def deletion_new(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    require(can_make_requests(principal), "Your role may not request deletions.")
    sub_account = sub_account_get(principal=principal, sub_account_id=sub_account_id)
    reason = unavailable_reason(sub_account, "delete")
    if reason and request.method == "GET":
        return render_unavailable(request, sub_account, "Request deletion", reason)
    destinations = selectors.choices_or_none(
        selectors.line_destinations(principal=principal, exclude_id=sub_account.pk), MAX_CHOICES
    )
    form = DeletionRequestForm(request.POST or None, destinations=destinations)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        disposition = data["line_disposition"] or None
        move_to_id = None
        if disposition == "move" and data["move_to_id"]:
            move_to_id = _resolved(form, "move_to_id", principal, data["move_to_id"])
        if not form.errors:
            try:
                deletion = deletions.deletion_request_create(
                    principal=principal,
                    sub_account_id=sub_account.pk,
                    line_disposition=disposition,
                    move_to_id=move_to_id,
                    reason=data["reason"],
                )
            except DomainError as exc:
                attach_error(form, exc)
            else:
                messages.success(request, f"Deletion request #{deletion.pk} sent for approval.")
                return redirect("workflows:deletion_detail", request_id=deletion.pk)
    return render(
        request,
        "workflows/deletion_form.html",
        _context(sub_account=sub_account, form=form),
        status=422 if form.errors else 200,
    )


@portal_view
def sub_account_options(request: HttpRequest) -> HttpResponse:
    """Name suggestions for a request form's sub-account search field: only those the
    request may name (``for=merge``: merge candidates; ``for=deletion``: where lines may
    go, Available included), drawn in the Add new line dialog's own partial."""
    principal = request.principal  # type: ignore[attr-defined]
    list_id = request.GET.get("list", "")
    if list_id not in _OPTION_LISTS:
        list_id = "target-options"
    term = (request.GET.get(_OPTION_LISTS[list_id]) or "").strip()
    names: list[str] = []
    if term:
        if request.GET.get("for") == "deletion":
            qs = selectors.line_destinations(principal=principal, search=term)
            if "available".startswith(term.casefold()):
                names.append("Available")
            qs = qs.filter(kind=SubAccountKind.STANDARD)
        else:
            qs = selectors.merge_candidates(principal=principal, search=term)
        names += list(qs.values_list("name", flat=True)[:SUGGESTIONS])
    return render(request, "partners/_sub_account_options.html", {"names": names, "id": list_id})


# --- decisions from a request's page ---------------------------------------------------

_MERGE_ACTIONS = {
    "approve": merges.merge_request_approve,
    "reject": merges.merge_request_reject,
    "cancel": merges.merge_request_cancel,
}
_DELETION_ACTIONS = {
    "approve": deletions.deletion_request_approve,
    "reject": deletions.deletion_request_reject,
    "cancel": deletions.deletion_request_cancel,
}
_DONE = {"approve": "approved", "reject": "rejected", "cancel": "cancelled", "restore": "restored"}


def _decide(request: HttpRequest, kind: str, request_id: int, action: str) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    detail = "workflows:merge_detail" if kind == "merge" else "workflows:deletion_detail"
    if action not in _DONE or (kind == "merge" and action == "restore"):
        raise NotFound(f"No action {action!r} on a {kind} request.")
    # Another partner's request answers 404 before its form is judged (a 422 for a
    # missing reason would tell the wall's two sides apart).
    get = selectors.merge_request_get if kind == "merge" else selectors.deletion_request_get
    get(principal=principal, request_id=request_id)
    if action == "restore":
        deletions.deletion_request_restore(principal=principal, request_id=request_id)
    else:
        form = DecisionForm(request.POST)
        reason = form.cleaned_data["reason"] if form.is_valid() else request.POST.get("reason")
        if kind == "merge" and action == "approve":
            merge = selectors.merge_request_get(principal=principal, request_id=request_id)
            if not names_match(request.POST.get("confirm_name"), merge.target.name):
                raise Invalid(confirm_name_error(merge.target.name), field="confirm_name")
        table = _MERGE_ACTIONS if kind == "merge" else _DELETION_ACTIONS
        table[action](principal=principal, request_id=request_id, reason=reason)
    label = "Merge" if kind == "merge" else "Deletion"
    messages.success(request, f"{label} request #{request_id} {_DONE[action]}.")
    if action == "restore":  # the Sub-accounts list restores too, and sends its own page
        return redirect(back_url(request, reverse(detail, kwargs={"request_id": request_id})))
    return redirect(detail, request_id=request_id)


@portal_view
@require_POST
def merge_action(request: HttpRequest, request_id: int, action: str) -> HttpResponse:
    return _decide(request, "merge", request_id, action)


@portal_view
@require_POST
def deletion_action(request: HttpRequest, request_id: int, action: str) -> HttpResponse:
    return _decide(request, "deletion", request_id, action)
