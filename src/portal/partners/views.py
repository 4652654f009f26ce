"""Sub-account pages, and Settings → Partner (mounted under ``settings:``)."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import F, QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods

from portal.accounts.policies import require
from portal.billing.policies import can_read_billing_summary
from portal.core.errors import DomainError
from portal.partners import list_page, selectors, services
from portal.partners.choices import ACTIVE, name_suggestions
from portal.partners.forms import (
    PartnerSettingsForm,
    SubAccountFilterForm,
    SubAccountForm,
    name_pattern_warning,
)
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus
from portal.partners.own_settings import partner_settings as partner_settings_read
from portal.partners.policies import (
    can_change_partner_settings,
    can_change_sub_accounts,
    unavailable_reason,
)
from portal.web.decorators import portal_view
from portal.web.forms import attach_error
from portal.web.sorting import sort_headers

PAGE_SIZE = 50
_SORTS = {
    "name": (Lower("name").asc(), "id"),
    "-name": (Lower("name").desc(), "-id"),
    "lines": ("line_count", Lower("name").asc()),
    "-lines": (F("line_count").desc(), Lower("name").asc()),
    "-created": ("-created_at", "-id"),
}


def _standard_page(qs: QuerySet[SubAccount], sort: str) -> QuerySet[SubAccount]:
    """Standard sub-accounts in the chosen order (the pool is shown apart, always first)."""
    return qs.exclude(kind=SubAccountKind.AVAILABLE).order_by(*_SORTS.get(sort, _SORTS["name"]))


# The Status filter's choices (SubAccountFilterForm.STATUSES) as the statuses listed.
_STATUS_FILTERS = {
    "": (SubAccountStatus.ACTIVE, SubAccountStatus.MERGED),
    "active": (SubAccountStatus.ACTIVE,),
    "pending_deletion": (SubAccountStatus.PENDING_DELETION,),
    "merged": (SubAccountStatus.MERGED,),
    "all": (SubAccountStatus.ACTIVE, SubAccountStatus.PENDING_DELETION, SubAccountStatus.MERGED),
}


@portal_view
def sub_account_list(request: HttpRequest) -> HttpResponse:
    """Every sub-account with its lines, this month's cost and last 30 days' figures
    (``list_page``), searched, filtered by status and sorted by any column."""
    principal = request.principal  # type: ignore[attr-defined]
    show_cost = principal.scope_partner_id is not None and can_read_billing_summary(principal)
    filters = SubAccountFilterForm(request.GET or None, show_cost=show_cost)
    filters.is_valid()
    # A refused field (an unknown sort or status) falls back to its default alone.
    data = getattr(filters, "cleaned_data", {})
    q, sort, status = data.get("q", ""), data.get("sort", ""), data.get("status", "")
    statuses = _STATUS_FILTERS[status]
    base = selectors.sub_account_list(principal=principal, search=q or None, statuses=statuses)
    pool = None
    if principal.scope_partner_id is not None and SubAccountStatus.ACTIVE in statuses:
        pool = base.filter(kind=SubAccountKind.AVAILABLE).first()
    listing = list_page.sub_account_listing(
        principal=principal,
        standard=_standard_page(base, sort),
        listed=_standard_page(base, "name"),
        pool=pool,
        sort=sort,
        page_number=request.GET.get("page"),
    )
    kept = {k: v for k, v in (("q", q), ("status", status)) if v}
    shown = list_page.columns(show_cost=listing.show_cost, show_analytics=listing.show_analytics)
    context = {
        "active_section": "sub-accounts",
        "filters": filters,
        "listing": listing,
        "page_obj": listing.page,
        "headers": sort_headers(shown, sort or "name", kept),
        "column_count": len(shown) + 1,
        "query_prefix": urlencode({**kept, **({"sort": sort} if sort else {})}) + "&"
        if (kept or sort)
        else "",
        "can_change": can_change_sub_accounts(principal),
        "status": status,
    }
    template = "partners/sub_account_list.html"
    if request.htmx and request.htmx.target == "results":  # type: ignore[attr-defined]
        template += "#results"
    return render(request, template, context)


@portal_view
@require_http_methods(["GET", "POST"])
def sub_account_create(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    require(can_change_sub_accounts(principal), "Your role may not create sub-accounts.")
    form = SubAccountForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            sub_account = services.sub_account_create(principal=principal, **form.cleaned_data)
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, f"Sub-account “{sub_account.name}” created.")
            return redirect("partners:sub_account_detail", sub_account_id=sub_account.pk)
    warning = name_pattern_warning(form["name"].value() or "")
    return render(
        request,
        "partners/sub_account_form.html",
        {
            "form": form,
            "active_section": "sub-accounts",
            "name_warning": warning,
            "title": "Create sub-account",
            "submit_label": "Create sub-account",
        },
        status=422 if form.errors else 200,
    )


@portal_view
def sub_account_name_check(request: HttpRequest) -> HttpResponse:
    """Inline validation while typing: the duplicate error and the soft pattern tip."""
    principal = request.principal  # type: ignore[attr-defined]
    name = (request.GET.get("name") or "").strip()
    exclude = request.GET.get("exclude")
    error = ""
    if name and principal.scope_partner_id is not None:
        # isascii() too: "²" is a digit to str.isdigit() but int() refuses it.
        exclude_id = int(exclude) if exclude and exclude.isascii() and exclude.isdigit() else None
        if selectors.sub_account_name_taken(
            principal.scope_partner_id, name, exclude_id=exclude_id
        ):
            error = f"A sub-account named “{name}” already exists."
    return render(
        request,
        "partners/_name_feedback.html",
        {"error": error, "warning": "" if error else name_pattern_warning(name)},
    )


@portal_view
def sub_account_options(request: HttpRequest) -> HttpResponse:
    """Name suggestions for the "Sub-account" field of partners with too many for a select:
    the partner's active sub-accounts."""
    return name_suggestions(
        request,
        request.principal,  # type: ignore[attr-defined]
        statuses=ACTIVE,
        lists=("sub-account-options", "filter-sub-account-options"),
    )


def render_unavailable(
    request: HttpRequest, sub_account: SubAccount, title: str, reason: str
) -> HttpResponse:
    """The page an action's URL shows when the action cannot start: its reason, no form."""
    return render(
        request,
        "partners/unavailable.html",
        {
            "sub_account": sub_account,
            "title": title,
            "reason": reason,
            "active_section": "sub-accounts",
        },
        status=409,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def sub_account_edit(request: HttpRequest, sub_account_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    sub_account = selectors.sub_account_get(principal=principal, sub_account_id=sub_account_id)
    require(can_change_sub_accounts(principal), "Your role may not change sub-accounts.")
    reason = unavailable_reason(sub_account, "edit")
    if reason and request.method == "GET":
        return render_unavailable(request, sub_account, f"Edit {sub_account.display_name}", reason)
    initial = {f: getattr(sub_account, f) for f in services.SUB_ACCOUNT_FIELDS}
    form = SubAccountForm(request.POST or None, initial=initial)
    if sub_account.kind == SubAccountKind.AVAILABLE:
        form.fields["name"].disabled = True
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items() if k in form.changed_data}
        try:
            services.sub_account_update(principal=principal, sub_account=sub_account, **changes)
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, "Changes saved.")
            return redirect("partners:sub_account_detail", sub_account_id=sub_account.pk)
    return render(
        request,
        "partners/sub_account_form.html",
        {
            "form": form,
            "sub_account": sub_account,
            "active_section": "sub-accounts",
            "name_warning": name_pattern_warning(form["name"].value() or ""),
            "title": f"Edit {sub_account.display_name}",
            "submit_label": "Save changes",
        },
        status=422 if form.errors else 200,
    )


# --- Settings → Partner (URL ``settings:partner``, beside Users and API keys) --------------


@portal_view
@require_http_methods(["GET", "POST"])
def partner_settings(request: HttpRequest) -> HttpResponse:
    """The partner's own settings (domain §2), for its admins (Settings is admin-only):
    the form for what they set, and what the provider sets, read-only."""
    principal = request.principal  # type: ignore[attr-defined]
    require(
        can_change_partner_settings(principal),
        "Only a partner admin changes the partner's settings.",
    )
    settings = partner_settings_read(principal=principal)
    partner = settings.partner
    initial = {f: getattr(partner, f) for f in services.PARTNER_SETTINGS_FIELDS}
    data = request.POST if request.method == "POST" else None  # an empty POST is a post
    form = PartnerSettingsForm(data, initial=initial, partner_name=partner.name)
    if request.method == "POST":
        valid = form.is_valid()
        # Only what this form changed: a field another admin changed meanwhile stays theirs.
        changes = {k: v for k, v in form.cleaned_data.items() if k in form.changed_data}
        try:
            if valid:
                services.partner_settings_update(principal=principal, **changes)
            else:  # the form refused some fields itself: the service judges the others
                services.clean_partner_settings(changes)
        except DomainError as exc:
            attach_error(form, exc)
        else:
            if valid:
                saved = "Partner settings saved." if changes else "Nothing changed."
                messages.success(request, saved)
                return redirect("settings:partner")
    return render(
        request,
        "partners/partner_settings.html",
        {
            "form": form,
            "settings": settings,
            "partner": partner,
            "active_section": "settings",
            "settings_tab": "partner",
        },
        status=422 if form.errors else 200,
    )
