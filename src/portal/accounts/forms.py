"""Forms for logging in, passwords, and Settings (users and API keys).

Services do the real validation and every write; these shape input and show errors.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import forms as auth_forms
from django.http import HttpRequest

from portal.accounts import services
from portal.accounts.backends import THROTTLED_ATTR
from portal.accounts.models import User
from portal.core.errors import NotFound
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.partners.choices import NOT_PURGED, resolve_sub_account, suggest

# The datalist the grant's search field fills (one of partners:sub_account_options' lists).
GRANT_OPTIONS_ID = "sub-account-options"

ROLE_HELP = (
    "Admin: everything, including users and API keys. Manager: sub-accounts, lines and "
    "requests. Billing: reads everything, invoices and exports. Viewer: reads "
    "sub-accounts, lines and analytics. Client: one of your own customers; reads only the "
    "sub-accounts you pick below (their lines and analytics), never your prices or invoices."
)


class ClientGrantMixin(forms.Form):
    """The sub-accounts a client may read (domain §8.2), picked among the partner's
    standard ones that are not purged; the service checks the pick.

    Up to ``partners.choices.SELECT_LIMIT`` of them (``grantable`` given) it is a select
    of several; beyond, the names one per line, with a "Find a sub-account" search field
    whose suggestions come from the Sub-account pickers' endpoint (a picked name is added
    to the list; without JavaScript, a name left in the search field is granted too). The
    names resolve among the principal's own sub-accounts, so ``cleaned_data`` holds
    ``sub_account_ids`` either way (empty for any role but Client: the pick is ignored)."""

    sub_account_ids = forms.MultipleChoiceField(
        label="Sub-accounts (for a client)",
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="Only for the Client role: the sub-accounts it may see.",
    )

    def __init__(
        self,
        *args: Any,
        principal: Principal,
        grantable: list[tuple[str, str]] | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.principal = principal
        self.grant_by_name = grantable is None
        if grantable is not None:
            self.fields["sub_account_ids"].choices = grantable
            return
        del self.fields["sub_account_ids"]
        self.fields["sub_account_names"] = forms.CharField(
            label="Sub-accounts (for a client)",
            required=False,
            max_length=200_000,
            widget=forms.Textarea(attrs={"rows": 5}),
            help_text="Only for the Client role: the sub-accounts it may see, one name a line.",
        )
        find = forms.CharField(label="Find a sub-account", required=False, max_length=300)
        suggest(find, GRANT_OPTIONS_ID)
        find.help_text = "Type part of a name and pick a suggestion to add it to the list."
        find.widget.attrs["data-adds-to"] = "dialog_sub_account_names"
        self.fields["sub_account"] = find

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("role") != Role.CLIENT:
            # The picker is for the Client role only: a user changed to another role (or
            # invited as one) leaves what it still shows behind, and loses the grant.
            cleaned["sub_account_ids"] = []
            return cleaned
        if not self.grant_by_name:
            return cleaned
        typed = (cleaned.get("sub_account_names") or "").splitlines()
        typed.append(cleaned.get("sub_account") or "")
        names = list(dict.fromkeys(name.strip() for name in typed if name.strip()))
        ids = []
        for name in names:
            try:
                found = resolve_sub_account(self.principal, name, statuses=NOT_PURGED, ids=False)
            except NotFound as exc:
                self.add_error("sub_account_names", str(exc.detail))
            else:
                ids.append(found)
        cleaned["sub_account_ids"] = ids
        return cleaned


def _fold(text: str) -> str:
    """Compare emails as people read them (Unicode look-alikes do not match)."""
    return unicodedata.normalize("NFKC", text).casefold()


class ThrottledLoginMixin:
    """Says that logging in is paused, instead of "wrong password", while it is.

    The throttle itself runs inside ``authenticate()`` (``portal.accounts.backends``), so
    it guards every login form; this only words the refusal and sets ``throttled`` so the
    view can answer 429.
    """

    request: HttpRequest | None
    throttled: bool = False

    def clean(self) -> dict[str, Any]:
        self.throttled = False
        try:
            return super().clean()  # type: ignore[misc]
        except forms.ValidationError:
            paused = getattr(self.request, THROTTLED_ATTR, None)
            if paused:
                self.throttled = True
                raise forms.ValidationError(paused, code="throttled") from None
            raise


class LoginForm(ThrottledLoginMixin, auth_forms.AuthenticationForm):
    """Email and password, refused for a while after repeated failures (see backends)."""

    error_messages = {
        **auth_forms.AuthenticationForm.error_messages,
        "invalid_login": "Your email and password didn't match. Please try again.",
        "inactive": "This account is deactivated. Ask your partner admin.",
    }


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The Django admin's login form, with the same wording of a pause."""


class PasswordChangeForm(auth_forms.PasswordChangeForm):
    """The logged-in user's own password; the change goes through ``user_password_set``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["old_password"].label = "Current password"
        self.fields["new_password1"].label = "New password"
        self.fields["new_password1"].help_text = "At least 8 characters, not a common password."
        self.fields["new_password2"].label = "Confirm new password"

    def save(self, commit: bool = True) -> User:
        return services.user_password_set(
            principal=Principal.for_user(self.user),
            user=self.user,
            password=self.cleaned_data["new_password1"],
            via="change",
        )


class SetPasswordForm(auth_forms.SetPasswordForm):
    """A password set from an emailed link (invitation or reset)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].label = "New password"
        self.fields["new_password1"].help_text = "At least 8 characters, not a common password."
        self.fields["new_password2"].label = "Confirm new password"

    def save(self, commit: bool = True) -> User:
        return services.user_password_set(
            principal=Principal.for_user(self.user),
            user=self.user,
            password=self.cleaned_data["new_password1"],
            via="reset",
        )


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Like Django's, but invited users (no password yet) may ask for a new link too."""

    def get_users(self, email: str) -> Iterator[User]:
        wanted = _fold(email)
        users = User.objects.filter(email__iexact=email, is_active=True)
        return (u for u in users if _fold(u.email) == wanted)


class DialogForm(forms.Form):
    """Dialog fields get their own ids: the page behind may use the same names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "dialog_%s")
        super().__init__(*args, **kwargs)


class InviteForm(ClientGrantMixin, DialogForm):
    email = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
        help_text="They get an email with a link to set their password.",
    )
    full_name = forms.CharField(label="Name", required=False, max_length=120)
    role = forms.ChoiceField(label="Role", choices=Role.choices, help_text=ROLE_HELP)


class RoleForm(ClientGrantMixin, DialogForm):
    role = forms.ChoiceField(label="Role", choices=Role.choices, help_text=ROLE_HELP)


class ApiKeyForm(ClientGrantMixin, DialogForm):
    name = forms.CharField(
        label="Key name",
        max_length=120,
        help_text="Say where the key is used, e.g. “CRM sync”.",
    )
    role = forms.ChoiceField(
        label="Role",
        choices=Role.choices,
        initial=Role.VIEWER,
        help_text="The key may do what a user with this role may do.",
    )
