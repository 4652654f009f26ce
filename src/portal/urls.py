"""URL map: the REST API under /api/v1, the admin, and the pages."""

from django.contrib import admin
from django.urls import include, path, re_path

from portal.accounts.urls import settings_urlpatterns
from portal.api import api, api_not_found
from portal.webhooks.urls import settings_urlpatterns as webhook_settings_urlpatterns

urlpatterns = [
    path("api/v1/", api.urls),
    # After the API's routes: an /api/v1/ path none of them matches answers JSON 404.
    re_path(r"^api/v1/", api_not_found),
    path("admin/", admin.site.urls),
    # Before web's: /login/ (throttled) and /logout/ are answered by accounts' views.
    path("", include("portal.accounts.urls")),
    path("settings/", include((settings_urlpatterns + webhook_settings_urlpatterns, "settings"))),
    path("staff/", include("portal.staff.urls")),
    path("", include("portal.partners.urls")),
    path("", include("portal.lines.urls")),
    path("", include("portal.billing.urls")),
    path("", include("portal.analytics.urls")),
    path("", include("portal.alerts.urls")),
    path("", include("portal.workflows.urls")),
    path("", include("portal.notifications.urls")),
    path("", include("portal.audit.urls")),
    path("", include("portal.web.urls")),
]
