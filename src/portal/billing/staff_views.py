"""Staff pages for one partner's billing: price and policies, discounts, credits,
finalising drafts. Reached from Staff → Partners ("Billing").

One page shows everything; each form posts to its own URL, which calls one service,
then redirects back with a message, or re-renders the page with the errors in place
(422). Staff act here as themselves narrowed to this partner, so every read and write
is scoped to it whatever partner the session acts for elsewhere.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal.billing import cycles_due, invoicing, selectors, terms
from portal.billing.models import DiscountKind, Invoice, InvoiceStatus
from portal.billing.money import quantize
from portal.core.errors import Conflict, DomainError, NotFound
from portal.core.principal import Principal
from portal.partners.choices import ACTIVE, SELECT_LIMIT, name_suggestions, resolve_sub_account
from portal.partners.models import Partner, SubAccount, SubAccountStatus
from portal.partners.selectors import partner_by_slug
from portal.web.decorators import staff_view
from portal.web.forms import attach_error

WHOLE_INVOICE = ""
LEDGER_SHOWN = 50
INVOICES_SHOWN = 12
MONTHS_AHEAD = 12


def _sub_accounts(partner: Partner) -> QuerySet[SubAccount]:
    return SubAccount.objects.filter(
        partner_id=partner.pk, status=SubAccountStatus.ACTIVE
    ).listed_order()


class _TargetForm(forms.Form):
    """A form with a "sub_account" target: a select of the partner's active sub-accounts
    (first choice: ``whole_label``, the empty value), or, for a partner with more than a
    select holds, a name field with suggestions, resolved within the partner on submit."""

    whole_label = ""
    by_name = False

    def setup_target(self, principal: Principal, partner: Partner, list_id: str) -> None:
        """``principal``: the staff member narrowed to ``partner``, whose sub-accounts these are."""
        self.principal = principal
        field = self.fields["sub_account"]
        rows = list(_sub_accounts(partner).only("pk", "name", "kind")[: SELECT_LIMIT + 1])
        if len(rows) <= SELECT_LIMIT:
            field.choices = [(WHOLE_INVOICE, self.whole_label)] + [
                (str(s.pk), s.display_name) for s in rows
            ]
            return
        self.by_name = True
        url = reverse("staff:partner_billing_sub_account_options", args=[partner.slug])
        text = forms.CharField(
            label=field.label,
            required=False,
            max_length=120,
            help_text=f"Empty: {self.whole_label.lower()}. Or type part of a sub-account's "
            "name and pick a suggestion.",
        )
        text.widget.attrs.update(
            {
                "list": list_id,
                "autocomplete": "off",
                "hx-get": f"{url}?list={list_id}",
                "hx-trigger": "input changed delay:250ms",
                "hx-target": f"#{list_id}",
                "hx-swap": "outerHTML",
            }
        )
        self.fields["sub_account"] = text

    def clean_sub_account(self) -> str:
        value = (self.cleaned_data.get("sub_account") or "").strip()
        if not self.by_name or not value:
            return value
        try:
            return str(resolve_sub_account(self.principal, value, ids=False))
        except NotFound as exc:
            raise forms.ValidationError(str(exc.detail)) from None


class BillingSettingsForm(forms.Form):
    line_price = forms.DecimalField(
        label="Price per line per month",
        min_value=0,
        max_digits=12,
        decimal_places=4,
        help_text="A new price applies from the next cycle; invoices already issued keep theirs.",
    )
    prorate_new_lines = forms.BooleanField(
        label="Prorate new lines (off: a new line pays the full month)", required=False
    )
    credit_disconnects = forms.BooleanField(
        label="Credit the unused days of disconnected lines", required=False
    )


class DiscountForm(_TargetForm):
    whole_label = "Whole invoice (all sub-accounts)"
    name = forms.CharField(label="Name", max_length=120, required=False)
    sub_account = forms.ChoiceField(label="Applies to", required=False)
    kind = forms.ChoiceField(label="Kind", choices=DiscountKind.choices)
    value = forms.DecimalField(
        label="Value",
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=4,
        help_text="A percentage (e.g. 10) or an amount per invoice in the partner's currency.",
    )
    first_month = forms.ChoiceField(label="From the invoice of")
    cycles = forms.IntegerField(
        label="Number of invoices",
        min_value=1,
        max_value=terms.MAX_DISCOUNT_CYCLES,
        required=False,
        help_text="Empty: until removed.",
    )

    def __init__(
        self,
        *args: Any,
        principal: Principal,
        partner: Partner,
        months: list[dt.date],
        **kwargs: Any,
    ) -> None:
        # Its own ids: the credit form on the same page has a sub_account field too.
        kwargs.setdefault("auto_id", "id_discount_%s")
        super().__init__(*args, **kwargs)
        self.setup_target(principal, partner, "discount-sub-account-options")
        self.fields["first_month"].choices = [(f"{m:%Y-%m}", f"{m:%B %Y}") for m in months]


class CreditForm(_TargetForm):
    whole_label = "The partner (any section)"
    amount = forms.DecimalField(label="Amount", min_value=Decimal("0.0001"), max_digits=14)
    sub_account = forms.ChoiceField(label="Credit to", required=False)
    reason = forms.CharField(
        label="Reason", max_length=500, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, principal: Principal, partner: Partner, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "id_credit_%s")
        super().__init__(*args, **kwargs)
        self.setup_target(principal, partner, "credit-sub-account-options")


def _principal(request: HttpRequest, partner: Partner) -> Principal:
    return request.staff_principal.acting_for(partner.pk)  # type: ignore[attr-defined]


def _months(partner: Partner) -> list[dt.date]:
    first = cycles_due.next_invoice_cycle(partner)
    months, cycle = [], first
    for _ in range(MONTHS_AHEAD):
        months.append(cycle.first_day)
        cycle = cycle.next()
    return months


def _page(
    request: HttpRequest,
    partner: Partner,
    *,
    settings_form: BillingSettingsForm | None = None,
    discount_form: DiscountForm | None = None,
    credit_form: CreditForm | None = None,
    status: int = 200,
) -> HttpResponse:
    principal = _principal(request, partner)
    settings = selectors.billing_settings(principal=principal)
    partner = settings.partner
    months = _months(partner)
    if settings_form is None:
        settings_form = BillingSettingsForm(
            initial={
                "line_price": quantize(settings.next_price, partner.currency),
                "prorate_new_lines": partner.prorate_new_lines,
                "credit_disconnects": partner.credit_disconnects,
            }
        )
    discount_form = discount_form or DiscountForm(
        principal=principal, partner=partner, months=months
    )
    credit_form = credit_form or CreditForm(principal=principal, partner=partner)
    _, balances = selectors.credit_balance_list(principal=principal)
    invoices = Invoice.objects.visible_to(principal).order_by("-period_month")[:INVOICES_SHOWN]
    return render(
        request,
        "billing/staff/partner_billing.html",
        {
            "active_section": "staff",
            "staff_tab": "partners",
            "partner": partner,
            "settings": settings,
            "next_invoice_month": months[0],
            "settings_form": settings_form,
            "discount_form": discount_form,
            "credit_form": credit_form,
            "discounts": selectors.discount_list(principal=principal)[:100],
            "balances": balances,
            "ledger": selectors.credit_ledger(principal=principal)[:LEDGER_SHOWN],
            "invoices": invoices,
        },
        status=status,
    )


def _back(partner: Partner, anchor: str) -> HttpResponse:
    return redirect(reverse("staff:partner_billing", args=[partner.slug]) + f"#{anchor}")


@staff_view
def partner_billing(request: HttpRequest, slug: str) -> HttpResponse:
    return _page(request, partner_by_slug(slug))


@staff_view
@require_POST
def settings_update(request: HttpRequest, slug: str) -> HttpResponse:
    partner = partner_by_slug(slug)
    form = BillingSettingsForm(request.POST)
    if form.is_valid():
        try:
            terms.partner_billing_update(
                principal=_principal(request, partner), **form.cleaned_data
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, "Billing settings saved.")
            return _back(partner, "settings")
    return _page(request, partner, settings_form=form, status=422)


@staff_view
@require_POST
def discount_grant(request: HttpRequest, slug: str) -> HttpResponse:
    partner = partner_by_slug(slug)
    form = DiscountForm(
        request.POST,
        principal=_principal(request, partner),
        partner=partner,
        months=_months(partner),
    )
    if form.is_valid():
        data = form.cleaned_data
        year, month = (int(x) for x in data["first_month"].split("-"))
        try:
            discount = terms.discount_grant(
                principal=_principal(request, partner),
                kind=data["kind"],
                value=data["value"],
                name=data["name"],
                sub_account_id=int(data["sub_account"]) if data["sub_account"] else None,
                first_month=dt.date(year, month, 1),
                cycles=data["cycles"],
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, f"Discount “{discount.name}” granted.")
            return _back(partner, "discounts")
    return _page(request, partner, discount_form=form, status=422)


@staff_view
@require_POST
def discount_remove(request: HttpRequest, slug: str, discount_id: int) -> HttpResponse:
    partner = partner_by_slug(slug)
    try:
        discount = terms.discount_remove(
            principal=_principal(request, partner), discount_id=discount_id
        )
    except Conflict as exc:  # removed meanwhile, e.g. in another tab
        messages.warning(request, str(exc.detail))
    else:
        messages.success(request, f"Discount “{discount.name}” removed.")
    return _back(partner, "discounts")


@staff_view
@require_POST
def credit_grant(request: HttpRequest, slug: str) -> HttpResponse:
    partner = partner_by_slug(slug)
    form = CreditForm(request.POST, principal=_principal(request, partner), partner=partner)
    if form.is_valid():
        data = form.cleaned_data
        try:
            terms.credit_grant(
                principal=_principal(request, partner),
                amount=data["amount"],
                reason=data["reason"],
                sub_account_id=int(data["sub_account"]) if data["sub_account"] else None,
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, "Credit granted.")
            return _back(partner, "credits")
    return _page(request, partner, credit_form=form, status=422)


@staff_view
def sub_account_options(request: HttpRequest, slug: str) -> HttpResponse:
    """Name suggestions for the discount and credit targets of a partner with many: that
    partner's active sub-accounts (staff only, whatever partner the session acts for)."""
    return name_suggestions(
        request,
        _principal(request, partner_by_slug(slug)),
        statuses=ACTIVE,
        lists=("discount-sub-account-options", "credit-sub-account-options"),
    )


@staff_view
@require_POST
def invoice_finalize(request: HttpRequest, slug: str, invoice_id: int) -> HttpResponse:
    partner = partner_by_slug(slug)
    principal = _principal(request, partner)
    invoice = Invoice.objects.get_visible(principal, invoice_id, what="Invoice")
    if invoice.status != InvoiceStatus.DRAFT:
        messages.warning(request, f"Invoice {invoice.number} is already finalized.")
        return _back(partner, "invoices")
    invoicing.invoice_finalize(principal=principal, invoice=invoice)
    messages.success(request, f"Invoice {invoice.number} finalized.")
    return _back(partner, "invoices")
