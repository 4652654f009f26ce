"""Staff pages: partners (and acting for one), line orders, number inventory, approvals."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from portal.accounts.services import user_invite
from portal.core.errors import DomainError, NotFound
from portal.core.roles import Role
from portal.core.tenancy import db_id
from portal.lines.services import inventory_import as inventory_import_service
from portal.partners.models import Partner
from portal.partners.services import partner_create as partner_create_service
from portal.staff import selectors
from portal.staff.forms import InventoryImportForm, PartnerCreateForm, PartnerSearchForm
from portal.web.decorators import staff_view
from portal.web.forms import attach_error
from portal.web.principal import ACTING_PARTNER_SESSION_KEY
from portal.workflows.forms import MergeApprovalForm
from portal.workflows.models import MergeStatus
from portal.workflows.selectors import approval_queue, merge_request_get
from portal.workflows.services.deletions import deletion_request_approve, deletion_request_reject
from portal.workflows.services.merges import (
    merge_request_approve,
    merge_request_reject,
    merge_request_resume,
)

PAGE_SIZE = 50
# A report lists this many rejected rows; the rest are counted.
REJECTED_ROWS_SHOWN = 500


def _context(tab: str, **extra: Any) -> dict[str, Any]:
    return {"active_section": "staff", "staff_tab": tab, **extra}


@staff_view
def staff_home(request: HttpRequest) -> HttpResponse:
    return redirect("staff:partner_list")


@staff_view
def partner_list(request: HttpRequest) -> HttpResponse:
    principal = request.staff_principal  # type: ignore[attr-defined]
    filters = PartnerSearchForm(request.GET or None)
    q = filters.cleaned_data["q"] if filters.is_valid() else ""
    partners = selectors.partner_list(principal=principal, search=q or None)
    page_obj = Paginator(partners, PAGE_SIZE).get_page(request.GET.get("page"))
    template = "staff/partner_list.html"
    if request.htmx and request.htmx.target == "results":  # type: ignore[attr-defined]
        template += "#results"
    return render(
        request,
        template,
        _context(
            "partners",
            filters=filters,
            page_obj=page_obj,
            query_prefix=f"q={q}&" if q else "",
        ),
    )


@staff_view
@require_POST
def act_for(request: HttpRequest) -> HttpResponse:
    """Narrow the partner pages to one partner ("View as"), then go where the staff asked."""
    key = db_id(request.POST.get("partner_id"))
    partner = Partner.objects.filter(pk=key).only("pk", "name").first() if key else None
    if partner is None:
        raise NotFound(f"Partner {request.POST.get('partner_id')} not found.")
    request.session[ACTING_PARTNER_SESSION_KEY] = partner.pk
    messages.success(request, f"You are acting for {partner.name}.")
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("partners:sub_account_list")
    return redirect(target)


@staff_view
@require_POST
def stop_acting(request: HttpRequest) -> HttpResponse:
    request.session.pop(ACTING_PARTNER_SESSION_KEY, None)
    messages.success(request, "Back to all partners.")
    return redirect("staff:partner_list")


_PARTNER_FIELDS = ("name", "timezone", "currency", "line_price", "default_daily_limit")


@staff_view
@require_http_methods(["GET", "POST"])
def partner_create(request: HttpRequest) -> HttpResponse:
    """A new partner with its Available pool, and optionally its first admin (invited)."""
    principal = request.staff_principal  # type: ignore[attr-defined]
    form = PartnerCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        step = "partner"
        try:
            # Both or neither: a refused owner email leaves no partner behind.
            with transaction.atomic():
                partner = partner_create_service(
                    principal=principal, **{f: data[f] for f in _PARTNER_FIELDS}
                )
                if data["owner_email"]:
                    step = "owner"
                    user_invite(
                        principal=principal.acting_for(partner.pk),
                        email=data["owner_email"],
                        role=Role.ADMIN,
                        base_url=request.build_absolute_uri("/"),
                    )
        except DomainError as exc:
            if step == "owner":
                form.add_error("owner_email", str(exc.detail))
            else:
                attach_error(form, exc)
        else:
            text = f"Partner “{partner.name}” created."
            if data["owner_email"]:
                text += f" Invitation sent to {data['owner_email'].lower()}."
            messages.success(request, text)
            return redirect(reverse("staff:partner_list") + f"?q={partner.slug}")
    return render(
        request,
        "staff/partner_form.html",
        _context("partner_create", form=form),
        status=422 if form.errors else 200,
    )


@staff_view
def line_orders(request: HttpRequest) -> HttpResponse:
    principal = request.staff_principal  # type: ignore[attr-defined]
    orders = selectors.open_line_orders(principal=principal)
    page_obj = Paginator(orders, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "staff/line_orders.html",
        _context(
            "line_orders",
            page_obj=page_obj,
            stock=selectors.stock_by_area_code(principal=principal),
        ),
    )


@staff_view
@require_http_methods(["GET", "POST"])
def inventory_import(request: HttpRequest) -> HttpResponse:
    """Upload numbers (CSV); waiting orders are fulfilled at once; rejected rows are listed."""
    principal = request.staff_principal  # type: ignore[attr-defined]
    form = InventoryImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        try:
            report = inventory_import_service(
                principal=principal, csv_text=form.cleaned_data["file"]
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            report.rejected.sort(key=lambda row: row["row"])
            form = InventoryImportForm()
    return render(
        request,
        "staff/inventory_import.html",
        _context(
            "inventory",
            form=form,
            report=report,
            rejected_shown=report.rejected[:REJECTED_ROWS_SHOWN] if report else [],
            rejected_hidden=max(0, len(report.rejected) - REJECTED_ROWS_SHOWN) if report else 0,
        ),
        status=422 if form.errors else 200,
    )


# A merge is approved on its own page (merge_approval), after seeing what will move and
# typing the target's name: it cannot be undone.
_APPROVAL_ACTIONS = {
    ("merge", "reject"): merge_request_reject,
    ("merge", "resume"): merge_request_resume,
    ("deletion", "approve"): deletion_request_approve,
    ("deletion", "reject"): deletion_request_reject,
}
_APPROVAL_DONE = {"approve": "approved", "reject": "rejected", "resume": "resumed"}


@staff_view
@require_http_methods(["GET", "POST"])
def approvals(request: HttpRequest) -> HttpResponse:
    """Every partner's requests that wait for a decision, oldest first; merges in flight.

    A decision posts back here (``kind``, ``request_id``, ``action``, ``reason``); a
    refusal (a reject without a reason, a request decided meanwhile) is shown on the
    queue with its status code, and nothing changed.
    """
    principal = request.staff_principal  # type: ignore[attr-defined]
    status = 200
    error: dict[str, Any] | None = None
    if request.method == "POST":
        kind, action = request.POST.get("kind", ""), request.POST.get("action", "")
        request_id = request.POST.get("request_id")
        service = _APPROVAL_ACTIONS.get((kind, action))
        try:
            if service is None:
                raise NotFound(f"No action {action!r} on {kind!r} requests.")
            if action == "resume":
                service(principal=principal, request_id=request_id)
            else:
                service(
                    principal=principal, request_id=request_id, reason=request.POST.get("reason")
                )
        except DomainError as exc:
            status = exc.status_code
            error = {"kind": kind, "request_id": str(request_id), "detail": exc.detail}
        else:
            label = "Merge" if kind == "merge" else "Deletion"
            messages.success(request, f"{label} request #{request_id} {_APPROVAL_DONE[action]}.")
            return redirect("staff:approvals")
    return render(
        request,
        "staff/approvals.html",
        _context("approvals", error=error, **approval_queue(principal=principal)),
        status=status,
    )


@staff_view
@require_http_methods(["GET", "POST"])
def merge_approval(request: HttpRequest, request_id: int) -> HttpResponse:
    """Approving a merge: its sources → target with the lines each will move, then the
    target's name typed to confirm (dashes, spacing and capitals aside)."""
    principal = request.staff_principal  # type: ignore[attr-defined]
    merge = merge_request_get(principal=principal, request_id=request_id)
    form = MergeApprovalForm(request.POST or None, target_name=merge.target.name)
    if request.method == "POST" and form.is_valid():
        try:
            merge_request_approve(principal=principal, request_id=merge.pk)
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, f"Merge request #{merge.pk} approved.")
            return redirect("staff:approvals")
    return render(
        request,
        "staff/merge_approval.html",
        _context(
            "approvals",
            merge=merge,
            form=form,
            pending=merge.status == MergeStatus.PENDING_APPROVAL,
        ),
        status=422 if form.errors else 200,
    )
