"""Forms for the request pages. Services do the real validation; these shape input."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms

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
