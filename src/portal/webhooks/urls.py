"""Settings → Webhooks, mounted under /settings/ in the ``settings`` namespace
(portal/urls.py), beside Users and API keys."""

from django.urls import path

from portal.webhooks import views

settings_urlpatterns = [
    path("webhooks/", views.webhook_list, name="webhooks"),
    path("webhooks/new/", views.webhook_create, name="webhook_create"),
    path("webhooks/<int:endpoint_id>/", views.webhook_detail, name="webhook_detail"),
    path("webhooks/<int:endpoint_id>/edit/", views.webhook_edit, name="webhook_edit"),
    path("webhooks/<int:endpoint_id>/rotate/", views.webhook_rotate, name="webhook_rotate"),
    path("webhooks/<int:endpoint_id>/delete/", views.webhook_delete, name="webhook_delete"),
    path("webhooks/<int:endpoint_id>/test/", views.webhook_test, name="webhook_test"),
    path(
        "webhooks/deliveries/<int:delivery_id>/",
        views.webhook_delivery,
        name="webhook_delivery",
    ),
    path(
        "webhooks/deliveries/<int:delivery_id>/retry/",
        views.webhook_delivery_retry,
        name="webhook_delivery_retry",
    ),
]
