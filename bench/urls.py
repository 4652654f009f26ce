"""The portal's URLs plus the web bench's baselines: bare Django views, no auth.

Each returns the same rows as the portal's endpoint it is compared with, as JSON, from
one ``.values()`` query and one count: the least a Django view can do for that page.
Mounted only by :mod:`bench.settings` (never in the product).
"""

from __future__ import annotations

from django.db.models import F, Sum
from django.db.models.functions import Lower
from django.http import HttpRequest, JsonResponse
from django.urls import path

from portal.analytics.models import DailySubAccountRollup
from portal.lines.models import Line, LineStatus
from portal.partners.models import SubAccount, SubAccountStatus
from portal.urls import urlpatterns as portal_urlpatterns

SUB_ACCOUNT_FIELDS = (
    "id",
    "name",
    "kind",
    "status",
    "line_count",
    "contact_name",
    "contact_email",
    "contact_phone",
    "internal_reference",
    "notes",
    "merged_into_id",
    "created_at",
)
LINE_FIELDS = (
    "id",
    "number",
    "status",
    "sub_account_id",
    "label",
    "user_name",
    "user_email",
    "notes",
    "daily_limit",
    "order_id",
    "activated_at",
    "disconnected_at",
)


def _window(request: HttpRequest) -> tuple[int, int]:
    return int(request.GET.get("offset", 0)), int(request.GET.get("limit", 50))


def bare_sub_accounts(request: HttpRequest) -> JsonResponse:
    """``GET /api/v1/sub-accounts``'s rows (same filter and order) for ``?partner=<id>``."""
    offset, limit = _window(request)
    qs = SubAccount.objects.filter(
        partner_id=int(request.GET["partner"]),
        status__in=[SubAccountStatus.ACTIVE, SubAccountStatus.MERGED],
    ).listed_order()
    if "id" in request.GET:  # one sub-account: what its client lists
        qs = qs.filter(pk=int(request.GET["id"]))
    if request.GET.get("sort") == "-lines":  # the Sub-accounts page's "Most lines"
        qs = qs.order_by(F("line_count").desc(), Lower("name"))
    items = list(qs.values(*SUB_ACCOUNT_FIELDS)[offset : offset + limit])
    return JsonResponse({"items": items, "count": qs.count()})


def bare_lines(request: HttpRequest) -> JsonResponse:
    """``GET /api/v1/lines?status=active[&sub_account_id=…]``'s rows for ``?partner=<id>``."""
    offset, limit = _window(request)
    qs = Line.objects.filter(partner_id=int(request.GET["partner"]), status=LineStatus.ACTIVE)
    if "sub_account_id" in request.GET:
        qs = qs.filter(sub_account_id=int(request.GET["sub_account_id"]))
    qs = qs.order_by("number", "pk")
    items = list(qs.values(*LINE_FIELDS)[offset : offset + limit])
    return JsonResponse({"items": items, "count": qs.count()})


def bare_sub_account_analytics(request: HttpRequest) -> JsonResponse:
    """One sub-account's daily rollup rows over ``?start=&end=`` (ISO dates) summed: the
    figures ``GET /api/v1/analytics/sub-accounts`` answers a client of it, in one query."""
    totals = DailySubAccountRollup.objects.filter(
        partner_id=int(request.GET["partner"]),
        sub_account_id=int(request.GET["sub_account_id"]),
        day__range=(request.GET["start"], request.GET["end"]),
    ).aggregate(
        messages_sent=Sum("messages_sent"),
        messages_received=Sum("messages_received"),
        new_conversations=Sum("new_conversations"),
        responded_conversations=Sum("responded_conversations"),
        over_pressured_line_days=Sum("over_pressured_line_days"),
        active_line_days=Sum("active_line_days"),
        limit_line_days=Sum("limit_line_days"),
    )
    return JsonResponse({"items": [totals], "count": 1})


urlpatterns = [
    path("bench/bare-sub-account-analytics", bare_sub_account_analytics),
    path("bench/bare-sub-accounts", bare_sub_accounts),
    path("bench/bare-lines", bare_lines),
    *portal_urlpatterns,
]
