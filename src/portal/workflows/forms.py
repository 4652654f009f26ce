"""Forms for the request pages. Services do the real validation; these shape input."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms

from portal.core.text import names_match
from portal.partners.models import SubAccount
from portal.workflows.models import LineDisposition

# A select lists at most this many sub-accounts; beyond it, merges go through the API.
MAX_CHOICES = 1000


def _choices(sub_accounts: Iterable[SubAccount]) -> list[tuple[str, str]]:
    return [(str(sa.pk), f"{sa.display_name} ({sa.line_count} lines)") for sa in sub_accounts]


class MergeRequestForm(forms.Form):
    """Step 1 chooses the sub-accounts; step 2 (``confirm_name`` present) submits."""

    also_merge = forms.MultipleChoiceField(
        label="Other sub-accounts to merge",
        required=False,
        help_text="Optional: every sub-account chosen here moves into the target too.",
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    target_id = forms.ChoiceField(
        label="Merge into (target)",
        help_text="The sub-account that keeps the lines, analytics history and billing.",
    )
    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    confirm_name = forms.CharField(label="Type the target's name to confirm", required=False)

    def __init__(self, *args: Any, candidates: Iterable[SubAccount] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = _choices(candidates)
        self.fields["also_merge"].choices = choices
        self.fields["target_id"].choices = [("", "Choose the target…"), *choices]
        self.fields["confirm_name"].widget.attrs["autocomplete"] = "off"


def confirm_name_error(target_name: str) -> str:
    """The refusal of a typed confirmation that is not the target's name (dashes, spacing
    and capitals aside: ``core.text.names_match``)."""
    return f"Type the target's name, “{target_name}”, to confirm: a merge cannot be undone."


class MergeApprovalForm(forms.Form):
    """Staff approving a merge type the target's name, having seen what will move."""

    confirm_name = forms.CharField(
        label="Type the target's name to confirm", required=False, max_length=200
    )

    def __init__(self, *args: Any, target_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target_name = target_name
        self.fields["confirm_name"].widget.attrs["autocomplete"] = "off"

    def clean_confirm_name(self) -> str:
        typed = self.cleaned_data.get("confirm_name", "")
        if not names_match(typed, self.target_name):
            raise forms.ValidationError(confirm_name_error(self.target_name))
        return typed


class DeletionRequestForm(forms.Form):
    line_disposition = forms.ChoiceField(
        label="What happens to its lines",
        choices=LineDisposition.choices,
        required=False,
        widget=forms.RadioSelect,
    )
    move_to_id = forms.ChoiceField(label="Move the lines to", required=False)
    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, destinations: Iterable[SubAccount] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["move_to_id"].choices = [
            ("", "Choose a sub-account…"),
            *_choices(destinations),
        ]


class DecisionForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
