"""Logging in and passwords (``accounts:``), and Settings for partner admins (``settings:``:
Users and API keys here, Partner in ``partners.views``)."""

from django.urls import path

from portal.accounts import views
from portal.partners import views as partner_views

app_name = "accounts"
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("account/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/done/",
        views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
]

# Mounted under /settings/ with the namespace "settings" (see portal/urls.py).
settings_urlpatterns = [
    path("", views.settings_home, name="home"),
    path("users/", views.user_list, name="users"),
    path("users/invite/", views.user_invite, name="user_invite"),
    path("users/<int:user_id>/role/", views.user_role, name="user_role"),
    path("users/<int:user_id>/deactivate/", views.user_deactivate, name="user_deactivate"),
    path("users/<int:user_id>/reactivate/", views.user_reactivate, name="user_reactivate"),
    path("api-keys/", views.api_key_list, name="api_keys"),
    path("api-keys/new/", views.api_key_create, name="api_key_create"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("partner/", partner_views.partner_settings, name="partner"),
]
