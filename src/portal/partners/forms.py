"""Forms for sub-account pages. Services do the real validation; these shape input."""

from __future__ import annotations

from django import forms

from portal.partners.services import (
    CONTACT_NAME_MAX,
    DAILY_LIMIT_MAX,
    DAILY_LIMIT_MIN,
    DISPLAY_NAME_MAX,
    EMAIL_MAX,
    NAME_MAX,
    NOTES_MAX,
    PHONE_MAX,
    REFERENCE_MAX,
    RETENTION_DAYS_MAX,
    RETENTION_DAYS_MIN,
)

NAME_HINT = 'Recommended: "Client – Use Case", e.g. "Client ABC – Sales Campaign".'


def name_pattern_warning(name: str) -> str:
    """A soft warning when a name does not follow "Client – Use Case"; never an error."""
    text = (name or "").strip()
    if not text:
        return ""
    if any(sep in text for sep in (" – ", " — ", " - ")):
        return ""
    return 'Tip: names like "Client ABC – Sales Campaign" keep clients and use cases easy to find.'


def _limit(length: int, **attrs: str) -> dict[str, str]:
    return {"maxlength": str(length), **attrs}


class SubAccountForm(forms.Form):
    """Shapes input only: every field is checked by the service, which reports every
    refused field at once; the inputs' maxlength is the service's limit."""

    name = forms.CharField(
        label="Sub-account name",
        required=False,
        help_text=NAME_HINT,
        widget=forms.TextInput(attrs=_limit(NAME_MAX, required="")),
    )
    contact_name = forms.CharField(
        label="Contact name", required=False, widget=forms.TextInput(attrs=_limit(CONTACT_NAME_MAX))
    )
    contact_email = forms.CharField(
        label="Contact email",
        required=False,
        widget=forms.EmailInput(attrs=_limit(EMAIL_MAX, autocomplete="off")),
    )
    contact_phone = forms.CharField(
        label="Contact phone",
        required=False,
        help_text="With the country code, e.g. +1 415 555 0100.",
        widget=forms.TextInput(attrs=_limit(PHONE_MAX, type="tel", autocomplete="off")),
    )
    internal_reference = forms.CharField(
        label="Internal reference",
        required=False,
        widget=forms.TextInput(attrs=_limit(REFERENCE_MAX)),
    )
    notes = forms.CharField(
        label="Notes",
        required=False,
        widget=forms.Textarea(attrs=_limit(NOTES_MAX, rows="3")),
    )


class PartnerSettingsForm(forms.Form):
    """Settings → Partner. Shapes input only: the bounds are checked by
    ``partner_settings_update``, whose messages show on the fields; the inputs carry the
    same bounds as ``min``/``max``/``maxlength`` for browsers and assistive technology."""

    display_name = forms.CharField(
        label="Display name for your clients",
        required=False,
        widget=forms.TextInput(attrs=_limit(DISPLAY_NAME_MAX)),
    )
    self_service_requests = forms.BooleanField(
        label="Self-service approvals",
        required=False,
        help_text=(
            "An admin other than the requester approves merges and deletions. "
            "Off: your provider's staff approve them. Applies to pending requests too."
        ),
    )
    default_daily_limit = forms.IntegerField(
        label="Default daily limit for new lines",
        error_messages={
            "required": "Enter the default daily limit.",
            "invalid": "The default daily limit must be a whole number.",
        },
        help_text=(
            f"New conversations a day, {DAILY_LIMIT_MIN:,} to {DAILY_LIMIT_MAX:,}: the limit "
            "a line gets when it is assigned without one, and goes back to when it returns "
            "to Available. Lines keep the limit they have."
        ),
        widget=forms.NumberInput(
            attrs={"min": str(DAILY_LIMIT_MIN), "max": str(DAILY_LIMIT_MAX), "step": "1"}
        ),
    )
    deletion_retention_days = forms.IntegerField(
        label="Days a deleted sub-account can be restored",
        error_messages={
            "required": "Enter the number of days.",
            "invalid": "The number of days must be a whole number.",
        },
        help_text=(
            f"{RETENTION_DAYS_MIN} to {RETENTION_DAYS_MAX} days after its deletion is "
            "approved; then it is purged. Deletions already approved keep their date."
        ),
        widget=forms.NumberInput(
            attrs={"min": str(RETENTION_DAYS_MIN), "max": str(RETENTION_DAYS_MAX), "step": "1"}
        ),
    )

    def __init__(self, *args: object, partner_name: str = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields[
            "display_name"
        ].help_text = f"The name your clients see. Leave it empty to use “{partner_name}”."


class SubAccountFilterForm(forms.Form):
    """The Sub-accounts list's search, status and sort. The column headings sort too; the
    select offers the same orders, so either way of choosing shows the other's choice.
    ``show_cost`` offers the This month sorts (roles that see the billing summary)."""

    SORTS = [
        ("name", "Name (A–Z)"),
        ("-name", "Name (Z–A)"),
        ("-lines", "Most lines"),
        ("lines", "Fewest lines"),
        ("-this_month", "Highest cost this month"),
        ("this_month", "Lowest cost this month"),
        ("-volume_limit_usage", "Highest volume limit usage"),
        ("volume_limit_usage", "Lowest volume limit usage"),
        ("-response_rate", "Highest response rate"),
        ("response_rate", "Lowest response rate"),
        ("-flags", "Most flags"),
        ("flags", "Fewest flags"),
        ("-created", "Newest"),
    ]
    COST_SORTS = {"this_month", "-this_month"}
    # "" is the list as it always was: what is in use, and merged ones (read-only, with the
    # sub-account they went into). Pending deletion is hidden until asked for.
    STATUSES = [
        ("", "Active and merged"),
        ("active", "Active"),
        ("pending_deletion", "Pending deletion"),
        ("merged", "Merged"),
        ("all", "All"),
    ]
    q = forms.CharField(label="Search", required=False, max_length=120)
    status = forms.ChoiceField(label="Status", choices=STATUSES, required=False)
    sort = forms.ChoiceField(label="Sort by", choices=SORTS, required=False)

    def __init__(self, *args: object, show_cost: bool = True, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if not show_cost:
            self.fields["sort"].choices = [c for c in self.SORTS if c[0] not in self.COST_SORTS]  # type: ignore[attr-defined]
