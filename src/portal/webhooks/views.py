"""Settings → Webhooks: endpoints, their one-time secrets and the delivery log."""

from __future__ import annotations

import json
from functools import partial

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.core.errors import DomainError
from portal.web.decorators import portal_view
from portal.web.dialogs import dialog_done, render_dialog
from portal.web.forms import attach_error
from portal.webhooks import catalogue, selectors, services
from portal.webhooks.forms import DeliveryFilterForm, EndpointForm
from portal.webhooks.models import WebhookEndpoint

PAGE_SIZE = 50
_dialog = partial(render_dialog, section="settings")
_TAB = {"active_section": "settings", "settings_tab": "webhooks"}


def _events_words(endpoint: WebhookEndpoint) -> str:
    if catalogue.ALL in endpoint.events:
        return "All events"
    return ", ".join(endpoint.events)


def _secret_shown(request: HttpRequest, endpoint: WebhookEndpoint, secret: str, *, new: bool):
    # The only time the secret is shown: rendered, never cached.
    response = _dialog(
        request,
        "webhooks/secret_shown.html",
        {"endpoint": endpoint, "secret": secret, "new": new},
        status=201 if new else 200,
    )
    response["Cache-Control"] = "no-store"
    return response


@portal_view
def webhook_list(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    endpoints = list(selectors.webhook_endpoint_list(principal=principal))
    for endpoint in endpoints:
        endpoint.events_words = _events_words(endpoint)
    return render(
        request,
        "webhooks/endpoint_list.html",
        {"endpoints": endpoints, "max_endpoints": services.MAX_ENDPOINTS, **_TAB},
    )


@portal_view
@require_http_methods(["GET", "POST"])
def webhook_create(request: HttpRequest) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    selectors.webhook_endpoint_list(principal=principal)  # 403 before a form is shown
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.webhook_endpoint_create(
                principal=principal,
                url=form.cleaned_data["url"],
                events=form.chosen_events(),
                description=form.cleaned_data["description"],
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, f"Webhook endpoint {issued.endpoint.url} added.")
            return _secret_shown(request, issued.endpoint, issued.secret, new=True)
    return _dialog(
        request,
        "webhooks/endpoint_form.html",
        {"form": form, "endpoint": None},
        status=422 if form.errors else 200,
    )


@portal_view
def webhook_detail(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    endpoint = selectors.webhook_endpoint_get(principal=principal, endpoint_id=endpoint_id)
    endpoint.events_words = _events_words(endpoint)
    filters = DeliveryFilterForm(request.GET or None)
    status = event_type = None
    if filters.is_valid():
        status = filters.cleaned_data["status"] or None
        event_type = filters.cleaned_data["event_type"] or None
    deliveries = selectors.webhook_delivery_list(
        principal=principal, endpoint_id=endpoint.pk, status=status, event_type=event_type
    )
    page_obj = Paginator(deliveries, PAGE_SIZE).get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("page", None)
    template = "webhooks/endpoint_detail.html"
    if request.htmx and request.htmx.target == "results":  # type: ignore[attr-defined]
        template += "#results"
    return render(
        request,
        template,
        {
            "endpoint": endpoint,
            "filters": filters,
            "page_obj": page_obj,
            "query_prefix": (params.urlencode() + "&") if params else "",
            **_TAB,
        },
    )


@portal_view
@require_http_methods(["GET", "POST"])
def webhook_edit(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    endpoint = selectors.webhook_endpoint_get(principal=principal, endpoint_id=endpoint_id)
    form = EndpointForm(
        request.POST or None, initial=EndpointForm.initial_for(endpoint), editing=True
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.webhook_endpoint_update(
                principal=principal,
                endpoint_id=endpoint.pk,
                url=form.cleaned_data["url"],
                events=form.chosen_events(),
                description=form.cleaned_data["description"],
                enabled=bool(form.cleaned_data.get("enabled")),
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, "Webhook endpoint saved.")
            return dialog_done(request, reverse("settings:webhook_detail", args=[endpoint.pk]))
    return _dialog(
        request,
        "webhooks/endpoint_form.html",
        {"form": form, "endpoint": endpoint},
        status=422 if form.errors else 200,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def webhook_rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    endpoint = selectors.webhook_endpoint_get(principal=principal, endpoint_id=endpoint_id)
    if request.method == "POST":
        issued = services.webhook_endpoint_rotate_secret(
            principal=principal, endpoint_id=endpoint.pk
        )
        messages.success(request, "Signing secret rotated.")
        return _secret_shown(request, issued.endpoint, issued.secret, new=False)
    return _dialog(request, "webhooks/rotate_dialog.html", {"endpoint": endpoint})


@portal_view
@require_http_methods(["GET", "POST"])
def webhook_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    endpoint = selectors.webhook_endpoint_get(principal=principal, endpoint_id=endpoint_id)
    if request.method == "POST":
        services.webhook_endpoint_delete(principal=principal, endpoint_id=endpoint.pk)
        messages.success(request, f"Webhook endpoint {endpoint.url} deleted.")
        return dialog_done(request, reverse("settings:webhooks"))
    return _dialog(request, "webhooks/delete_dialog.html", {"endpoint": endpoint})


@portal_view
@require_POST
def webhook_test(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    delivery = services.webhook_endpoint_test(principal=principal, endpoint_id=endpoint_id)
    messages.success(request, "Test event queued: it appears below once sent.")
    return redirect("settings:webhook_detail", endpoint_id=delivery.endpoint_id)


@portal_view
def webhook_delivery(request: HttpRequest, delivery_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    delivery = selectors.webhook_delivery_get(principal=principal, delivery_id=delivery_id)
    payload = json.dumps(selectors.payload_of(delivery), indent=2, ensure_ascii=False)
    return render(
        request,
        "webhooks/delivery_detail.html",
        {
            "delivery": delivery,
            "endpoint": delivery.endpoint,
            "payload": payload,
            "attempts": selectors.webhook_attempt_list(delivery=delivery),
            **_TAB,
        },
    )


@portal_view
@require_POST
def webhook_delivery_retry(request: HttpRequest, delivery_id: int) -> HttpResponse:
    principal = request.principal  # type: ignore[attr-defined]
    delivery = services.webhook_delivery_retry(principal=principal, delivery_id=delivery_id)
    messages.success(request, "Delivery queued to be sent again.")
    return redirect("settings:webhook_delivery", delivery_id=delivery.pk)
