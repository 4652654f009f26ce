"""Logging in, passwords, and Settings (Users, API keys) for partner admins."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_http_methods, require_POST

from portal.accounts import selectors, services
from portal.accounts.forms import (
    ApiKeyForm,
    ClientGrantMixin,
    InviteForm,
    LoginForm,
    PasswordChangeForm,
    PasswordResetForm,
    RoleForm,
    SetPasswordForm,
)
from portal.accounts.models import Membership
from portal.accounts.policies import can_manage_users, require
from portal.core.errors import Conflict, DomainError, NotFound
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.partners.choices import SELECT_LIMIT
from portal.partners.models import SubAccount, SubAccountKind, SubAccountStatus
from portal.web.decorators import portal_view
from portal.web.dialogs import dialog_done, render_dialog
from portal.web.forms import attach_error
from portal.web.principal import ACTING_PARTNER_SESSION_KEY

PAGE_SIZE = 50
_dialog = partial(render_dialog, section="settings")


# --- Logging in and passwords -----------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Email and password; paused after repeated failures (429 while paused)."""

    form_class = LoginForm
    template_name = "web/login.html"
    redirect_authenticated_user = True

    def form_invalid(self, form: LoginForm) -> HttpResponse:
        response = super().form_invalid(form)
        response.status_code = 429 if getattr(form, "throttled", False) else 200
        return response

    def get_default_redirect_url(self) -> str:
        # Staff start where they choose a partner; partners' people on their sub-accounts.
        user = self.request.user
        if user.is_staff and not self.request.session.get(ACTING_PARTNER_SESSION_KEY):
            return reverse("staff:partner_list")
        return super().get_default_redirect_url()


class LogoutView(auth_views.LogoutView):
    """POST only (Django's rule); back to the login page, saying so."""

    next_page = reverse_lazy("accounts:login")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You are logged out.")
        return response


class _Status422OnErrors:
    """Refused form submissions answer 422, like every other form of the portal."""

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)  # type: ignore[misc]
        response.status_code = 422
        return response


class PasswordChangeView(_Status422OnErrors, auth_views.PasswordChangeView):
    form_class = PasswordChangeForm
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:password_change")
    extra_context = {"active_section": "account"}

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        response = super().form_valid(form)  # keeps this session logged in
        messages.success(self.request, "Your password was changed.")
        return response


class PasswordResetView(_Status422OnErrors, auth_views.PasswordResetView):
    """Ask for a link to set a new password. The answer never says whether the email exists."""

    form_class = PasswordResetForm
    template_name = "accounts/password_reset_form.html"
    email_template_name = "accounts/email/password_reset.txt"
    subject_template_name = "accounts/email/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(_Status422OnErrors, auth_views.PasswordResetConfirmView):
    """The emailed link (reset or invitation): choose a password."""

    form_class = SetPasswordForm
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


# --- Settings: shared helpers ----------------------------------------------------------


def _admin(request: HttpRequest) -> Principal:
    principal = request.principal  # type: ignore[attr-defined]
    require(can_manage_users(principal), "Only a partner admin manages users and API keys.")
    return principal


def _membership(principal: Principal, user_id: int) -> Membership:
    membership = selectors.membership_list(principal=principal).filter_id("user_id", user_id)
    found = membership.first()
    if found is None:
        raise NotFound(f"User {user_id} not found.")
    return found


def _status(membership: Membership) -> tuple[str, str]:
    """(css status, label) of a user: active, invited (no password yet) or deactivated."""
    user = membership.user
    if not user.is_active:
        return "deactivated", "Deactivated"
    if not user.has_usable_password() and user.last_login is None:
        return "invited", "Invited"
    return "active", "Active"


# --- Settings → Users ------------------------------------------------------------------


@portal_view
def settings_home(request: HttpRequest) -> HttpResponse:
    _admin(request)
    return redirect("settings:users")


@portal_view
def user_list(request: HttpRequest) -> HttpResponse:
    principal = _admin(request)
    page_obj = Paginator(selectors.membership_list(principal=principal), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    grants = selectors.client_grants(principal=principal, holders=page_obj)
    for membership in page_obj:
        membership.status_class, membership.status_label = _status(membership)
        membership.is_me = principal.kind == "user" and membership.user_id == principal.id
        membership.grant = grants.get(membership.pk)
    return render(
        request,
        "accounts/user_list.html",
        {"page_obj": page_obj, "active_section": "settings", "settings_tab": "users"},
    )


def _grantable(principal: Principal) -> list[tuple[str, str]] | None:
    """The partner's sub-accounts a client may be granted, for the picker: standard ones
    that are not purged, in the listed order (the service checks the pick again); None
    past ``SELECT_LIMIT``, where the picker takes names with suggestions instead."""
    rows = list(
        SubAccount.objects.visible_to(principal)
        .filter(kind=SubAccountKind.STANDARD)
        .exclude(status=SubAccountStatus.DELETED)
        .listed_order()
        .values_list("pk", "name")[: SELECT_LIMIT + 1]
    )
    if len(rows) > SELECT_LIMIT:
        return None
    return [(str(pk), name) for pk, name in rows]


def _grant_form[F: ClientGrantMixin](
    form_class: type[F], request: HttpRequest, principal: Principal, **kw: Any
) -> F:
    return form_class(
        request.POST or None, principal=principal, grantable=_grantable(principal), **kw
    )


@portal_view
@require_http_methods(["GET", "POST"])
def user_invite(request: HttpRequest) -> HttpResponse:
    principal = _admin(request)
    form = _grant_form(InviteForm, request, principal, initial={"role": Role.VIEWER})
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_invite(
                principal=principal,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                full_name=form.cleaned_data["full_name"],
                base_url=request.build_absolute_uri("/"),
                sub_account_ids=form.cleaned_data["sub_account_ids"],
            )
        except Conflict as exc:  # the email is taken
            form.add_error("email", str(exc.detail))
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, f"Invitation sent to {user.email}.")
            return dialog_done(request, reverse("settings:users"))
    return _dialog(
        request, "accounts/invite_dialog.html", {"form": form}, status=422 if form.errors else 200
    )


@portal_view
@require_http_methods(["GET", "POST"])
def user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    principal = _admin(request)
    membership = _membership(principal, user_id)
    grant = membership.sub_accounts.order_by("name").values_list("pk", "name")
    form = _grant_form(RoleForm, request, principal, initial={"role": membership.role})
    form.initial |= (
        {"sub_account_names": "\n".join(name for _pk, name in grant)}
        if form.grant_by_name
        else {"sub_account_ids": [str(pk) for pk, _name in grant]}
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.user_role_change(
                principal=principal,
                user_id=membership.user_id,
                role=form.cleaned_data["role"],
                sub_account_ids=form.cleaned_data["sub_account_ids"],
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            label = Role(form.cleaned_data["role"]).label
            messages.success(request, f"{membership.user.email} is now {label}.")
            return dialog_done(request, reverse("settings:users"))
    return _dialog(
        request,
        "accounts/role_dialog.html",
        {"form": form, "membership": membership},
        status=422 if form.errors else 200,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def user_deactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    principal = _admin(request)
    membership = _membership(principal, user_id)
    error = ""
    if request.method == "POST":
        try:
            services.user_deactivate(principal=principal, user_id=membership.user_id)
        except DomainError as exc:
            error = str(exc.detail)
        else:
            messages.success(request, f"{membership.user.email} is deactivated.")
            return dialog_done(request, reverse("settings:users"))
    return _dialog(
        request,
        "accounts/deactivate_dialog.html",
        {"membership": membership, "error": error},
        status=409 if error else 200,
    )


@portal_view
@require_POST
def user_reactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    principal = _admin(request)
    user = services.user_reactivate(principal=principal, user_id=user_id)
    messages.success(request, f"{user.email} can log in again.")
    return redirect("settings:users")


# --- Settings → API keys ---------------------------------------------------------------


@portal_view
def api_key_list(request: HttpRequest) -> HttpResponse:
    principal = _admin(request)
    page_obj = Paginator(selectors.api_key_list(principal=principal), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    grants = selectors.client_grants(principal=principal, holders=page_obj)
    for key in page_obj:
        key.grant = grants.get(key.pk)
    return render(
        request,
        "accounts/api_key_list.html",
        {"page_obj": page_obj, "active_section": "settings", "settings_tab": "api_keys"},
    )


@portal_view
@require_http_methods(["GET", "POST"])
def api_key_create(request: HttpRequest) -> HttpResponse:
    principal = _admin(request)
    form = _grant_form(ApiKeyForm, request, principal)
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.api_key_create(
                principal=principal,
                name=form.cleaned_data["name"],
                role=form.cleaned_data["role"],
                sub_account_ids=form.cleaned_data["sub_account_ids"],
            )
        except DomainError as exc:
            attach_error(form, exc)
        else:
            messages.success(request, f"API key “{issued.api_key.name}” created.")
            # The only time the key is ever shown: rendered, never stored, never cached.
            response = _dialog(
                request,
                "accounts/api_key_created.html",
                {"api_key": issued.api_key, "raw_key": issued.raw},
                status=201,
            )
            response["Cache-Control"] = "no-store"
            return response
    return _dialog(
        request,
        "accounts/api_key_dialog.html",
        {"form": form},
        status=422 if form.errors else 200,
    )


@portal_view
@require_http_methods(["GET", "POST"])
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    principal = _admin(request)
    api_key = selectors.api_key_get(principal=principal, key_id=key_id)
    error = ""
    if request.method == "POST":
        try:
            services.api_key_revoke(principal=principal, key_id=api_key.pk)
        except DomainError as exc:
            error = str(exc.detail)
        else:
            messages.success(request, f"API key “{api_key.name}” revoked.")
            return dialog_done(request, reverse("settings:api_keys"))
    return _dialog(
        request,
        "accounts/api_key_revoke_dialog.html",
        {"api_key": api_key, "error": error},
        status=409 if error else 200,
    )
