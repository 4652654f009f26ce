"""REST endpoints for sub-accounts and the partner's own settings (``/partner``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router, Status

from portal.billing import resale
from portal.billing.money import quantize
from portal.core.api import MAX_LIMIT, MAX_OFFSET, principal_of
from portal.core.api import page as paginate
from portal.core.errors import Invalid
from portal.core.principal import Principal
from portal.partners import selectors, services
from portal.partners.models import SubAccount
from portal.partners.own_settings import partner_settings
from portal.partners.schemas import (
    ClientSubAccountListOut,
    ClientSubAccountOut,
    PartnerOut,
    PartnerPatchIn,
    SubAccountIn,
    SubAccountListOut,
    SubAccountOut,
    SubAccountPatchIn,
)

router = Router(tags=["sub-accounts"])


def _with_resale_prices(principal: Principal, sub_accounts: list[SubAccount]) -> list[SubAccount]:
    """Give each sub-account its ``resale_price`` (one query for them all), for roles that
    read billing; for the others the attribute stays unset and the shape leaves it out
    (``exclude_unset``), so null keeps its one meaning, "the partner's default"."""
    prices = resale.sub_account_resale_prices(
        principal=principal, sub_account_ids=[s.pk for s in sub_accounts]
    )
    if prices is not None:
        for sub_account in sub_accounts:
            price = prices.get(sub_account.pk)
            sub_account.resale_price = None if price is None else f"{price:f}"  # type: ignore[attr-defined]
    return sub_accounts


def _shaped(principal: Principal, sub_account: SubAccount) -> Any:
    """The sub-account in the principal's shape: a client's own (a plain dict, which the
    partner's shape cannot validate: it lacks notes and kind), else the model, which the
    partner's shape reads (``resale_price`` left unset, and so out, for roles that do not
    read billing)."""
    if principal.is_client:
        return ClientSubAccountOut.model_validate(sub_account).model_dump()
    return _with_resale_prices(principal, [sub_account])[0]


@router.get(
    "/sub-accounts",
    response=SubAccountListOut | ClientSubAccountListOut,
    exclude_unset=True,
    description="The partner's sub-accounts; a partner's client gets its own shape "
    "(ClientSubAccountListOut) holding only the sub-accounts it was granted.",
)
def list_sub_accounts(
    request: HttpRequest,
    search: str | None = None,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> Any:
    principal = principal_of(request)
    qs = selectors.sub_account_list(principal=principal, search=search, status=status)
    listed = paginate(qs, limit=limit, offset=offset)
    if principal.is_client:
        return ClientSubAccountListOut.model_validate(listed).model_dump()
    listed["items"] = _with_resale_prices(principal, listed["items"])
    return listed


@router.post("/sub-accounts", response={201: SubAccountOut}, exclude_unset=True)
def create_sub_account(request: HttpRequest, payload: SubAccountIn) -> Status:
    principal = principal_of(request)
    data = payload.model_dump(exclude_none=True)
    sub_account = services.sub_account_create(principal=principal, **data)
    return Status(201, _with_resale_prices(principal, [sub_account])[0])


@router.get(
    "/sub-accounts/{sub_account_id}",
    response=SubAccountOut | ClientSubAccountOut,
    exclude_unset=True,
    description="One sub-account; a partner's client gets its own shape "
    "(ClientSubAccountOut) and only for a sub-account it was granted.",
)
def get_sub_account(request: HttpRequest, sub_account_id: int) -> Any:
    principal = principal_of(request)
    sub_account = selectors.sub_account_get(principal=principal, sub_account_id=sub_account_id)
    return _shaped(principal, sub_account)


@router.patch("/sub-accounts/{sub_account_id}", response=SubAccountOut, exclude_unset=True)
def update_sub_account(
    request: HttpRequest, sub_account_id: int, payload: SubAccountPatchIn
) -> Any:
    """Change a sub-account's name or details and, for admins and billing people, its own
    resale price, all or nothing."""
    principal = principal_of(request)
    sub_account = selectors.sub_account_get(principal=principal, sub_account_id=sub_account_id)
    changes = payload.model_dump(exclude_unset=True)
    if changes.get("name", "") is None:
        raise Invalid("Sub-account name cannot be null.", field="name")
    priced = "resale_price" in changes
    price = changes.pop("resale_price", None)
    changes = {k: ("" if v is None else v) for k, v in changes.items()}
    if priced:
        sub_account = resale.sub_account_update_with_resale_price(
            principal=principal, sub_account=sub_account, resale_price=price, **changes
        )
    else:
        sub_account = services.sub_account_update(
            principal=principal, sub_account=sub_account, **changes
        )
    return _with_resale_prices(principal, [sub_account])[0]


# --- The partner's own settings -------------------------------------------------------------


def _partner_out(request: HttpRequest) -> dict[str, Any]:
    settings = partner_settings(principal=principal_of(request))
    partner = settings.partner
    price = settings.line_price
    return {
        "name": partner.name,
        "slug": partner.slug,
        "display_name": partner.display_name,
        "timezone": partner.timezone,
        "currency": partner.currency,
        "line_price": None if price is None else f"{quantize(price, partner.currency):f}",
        "default_daily_limit": partner.default_daily_limit,
        "deletion_retention_days": partner.deletion_retention_days,
        "self_service_requests": partner.self_service_requests,
    }


@router.get("/partner", response=PartnerOut, exclude_none=True)
def get_partner(request: HttpRequest) -> dict[str, Any]:
    """The partner the key acts for and its settings (staff keys: with ``partner``)."""
    return _partner_out(request)


@router.patch("/partner", response=PartnerOut, exclude_none=True)
def update_partner(request: HttpRequest, payload: PartnerPatchIn) -> dict[str, Any]:
    """Admin: change the display name, self-service approvals, the default daily limit
    of new lines or the days a deleted sub-account can be restored."""
    changes = payload.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None:
            raise Invalid(f"{name} cannot be null; omit it to keep it.", field=name)
    services.partner_settings_update(principal=principal_of(request), **changes)
    return _partner_out(request)
