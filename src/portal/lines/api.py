"""REST endpoints for lines and line orders."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from ninja import Query, Router, Status

from portal.core.api import MAX_LIMIT, MAX_OFFSET, page, principal_of
from portal.core.principal import Principal
from portal.lines import selectors, services
from portal.lines.models import Line, LineOrder
from portal.lines.schemas import (
    BulkMoveOut,
    LineAssignIn,
    LineBulkMoveIn,
    LineListOut,
    LineMoveIn,
    LineOrderIn,
    LineOrderListOut,
    LineOrderOut,
    LineOut,
)

router = Router(tags=["lines"])


@router.get("/lines", response=LineListOut)
def list_lines(
    request: HttpRequest,
    sub_account_id: int | None = None,
    status: str | None = None,
    search: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    qs = selectors.line_list(
        principal=principal_of(request),
        sub_account_id=sub_account_id,
        status=status,
        search=search,
    )
    return page(qs, limit=limit, offset=offset)


# Declared before /lines/{line_id}/… so "move" is never read as an id.
@router.post("/lines/move", response=BulkMoveOut)
def move_lines(request: HttpRequest, payload: LineBulkMoveIn) -> Any:
    return services.line_move_bulk(
        principal=principal_of(request),
        line_ids=payload.line_ids,
        sub_account_id=payload.sub_account_id,
        from_sub_account_id=payload.from_sub_account_id,
    )


@router.get("/lines/{line_id}", response=LineOut)
def get_line(request: HttpRequest, line_id: int) -> Any:
    return selectors.line_get(principal=principal_of(request), line_id=line_id)


@router.post("/lines/{line_id}/assign", response=LineOut)
def assign_line(request: HttpRequest, line_id: int, payload: LineAssignIn) -> Any:
    return services.line_assign(
        principal=principal_of(request), line_id=line_id, **payload.model_dump()
    )


@router.post("/lines/{line_id}/move", response=LineOut)
def move_line(request: HttpRequest, line_id: int, payload: LineMoveIn) -> Any:
    return services.line_move(
        principal=principal_of(request),
        line_id=line_id,
        sub_account_id=payload.sub_account_id,
        from_sub_account_id=payload.from_sub_account_id,
    )


@router.post("/lines/{line_id}/disconnect", response=LineOut)
def disconnect_line(request: HttpRequest, line_id: int) -> Any:
    return services.line_disconnect(principal=principal_of(request), line_id=line_id)


def _with_line_ids(qs: QuerySet[LineOrder]) -> QuerySet[LineOrder]:
    return qs.prefetch_related(
        Prefetch("lines", queryset=Line.objects.only("pk", "order_id").order_by("pk"))
    )


def _order_read(principal: Principal, order_id: int) -> dict[str, Any]:
    """The order as the API shows it, read again (with its lines) as the principal sees it."""
    return _order_out(_with_line_ids(LineOrder.objects.visible_to(principal)).get(pk=order_id))


def _order_out(order: LineOrder) -> dict[str, Any]:
    return {
        "id": order.pk,
        "quantity": order.quantity,
        "area_code": order.area_code,
        "status": order.status,
        "fulfilled_count": order.fulfilled_count,
        "line_ids": [line.pk for line in order.lines.all()],
        "requested_by": order.requested_by,
        "created_at": order.created_at,
    }


@router.post("/line-orders", response={201: LineOrderOut})
def create_line_order(request: HttpRequest, payload: LineOrderIn) -> Status:
    principal = principal_of(request)
    order = services.line_order_create(
        principal=principal,
        quantity=payload.quantity,
        area_code=payload.area_code,
    )
    return Status(201, _order_read(principal, order.pk))


@router.get("/line-orders", response=LineOrderListOut)
def list_line_orders(
    request: HttpRequest,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    qs = _with_line_ids(selectors.line_order_list(principal=principal_of(request)))
    return page(qs, limit=limit, offset=offset, shape=lambda orders: list(map(_order_out, orders)))


@router.get("/line-orders/{order_id}", response=LineOrderOut)
def get_line_order(request: HttpRequest, order_id: int) -> Any:
    principal = principal_of(request)
    order = selectors.line_order_get(principal=principal, order_id=order_id)
    return _order_read(principal, order.pk)


@router.post("/line-orders/{order_id}/cancel", response=LineOrderOut)
def cancel_line_order(request: HttpRequest, order_id: int) -> Any:
    principal = principal_of(request)
    order = services.line_order_cancel(principal=principal, order_id=order_id)
    return _order_read(principal, order.pk)
