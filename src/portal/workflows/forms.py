"""Forms for the request pages. Services do the real validation; these shape input."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.urls import reverse

from portal.core.text import names_match
from portal.partners.choices import SELECT_LIMIT
from portal.partners.models import SubAccount
from portal.workflows.models import LineDisposition

# Up to this many eligible sub-accounts a choice is a <select> (the Add new line dialog's
# threshold); beyond it, a name field with suggestions, resolved by name on the server.
MAX_CHOICES = SELECT_LIMIT
SEARCH_HINT = "Type part of the name and pick a suggestion."


def _choices(sub_accounts: Iterable[SubAccount]) -> list[tuple[str, str]]:
    return [(str(sa.pk), f"{sa.display_name} ({sa.line_count} lines)") for sa in sub_accounts]


def _search_field(field: forms.Field, *, kind: str, list_id: str) -> forms.CharField:
    """A name field with suggestions (of the sub-accounts this kind of request may name)
    replacing a choice among too many sub-accounts for a select."""
    text = forms.CharField(
        label=field.label,
        required=field.required,
        max_length=200,
        help_text=f"{field.help_text} {SEARCH_HINT}".strip(),
    )
    text.widget.attrs.update(
        {
            "list": list_id,
            "autocomplete": "off",
            "hx-get": reverse("workflows:sub_account_options") + f"?for={kind}&list={list_id}",
            "hx-trigger": "input changed delay:250ms",
            "hx-target": f"#{list_id}",
            "hx-swap": "outerHTML",
        }
    )
    return text


class MergeRequestForm(forms.Form):
    """Step 1 chooses the sub-accounts; step 2 (``confirm_name`` present) submits."""

    also_merge = forms.MultipleChoiceField(
        label="Other sub-accounts to merge",
        required=False,
        help_text="Every sub-account chosen here moves into the target too.",
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

    also_merge_name = forms.CharField(
        label="Add another sub-account to merge",
        required=False,
        max_length=200,
        help_text="It moves into the target too. " + SEARCH_HINT,
    )

    def __init__(
        self,
        *args: Any,
        candidates: Iterable[SubAccount] | None = (),
        chosen: Iterable[SubAccount] = (),
        **kwargs: Any,
    ) -> None:
        """``candidates`` fill the selects; None means too many for a select: the target
        is typed by name and other sources are added one name at a time (``chosen`` are
        those added so far, kept as ticked boxes)."""
        super().__init__(*args, **kwargs)
        self.searching = candidates is None
        if self.searching:
            self.fields["target_id"] = _search_field(
                self.fields["target_id"], kind="merge", list_id="target-options"
            )
            self.fields["also_merge"].label = "Also merging"
            self.fields["also_merge"].help_text = "Untick one to leave it out."
            self.fields["also_merge"].widget = forms.CheckboxSelectMultiple()
            self.fields["also_merge"].choices = _choices(chosen)
            self.fields["also_merge_name"].widget.attrs.update(
                _search_field(
                    self.fields["also_merge_name"], kind="merge", list_id="also-merge-options"
                ).widget.attrs
            )
        else:
            choices = _choices(candidates)
            self.fields["also_merge"].choices = choices
            self.fields["target_id"].choices = [("", "Choose the target…"), *choices]
            del self.fields["also_merge_name"]
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

    def __init__(
        self, *args: Any, destinations: Iterable[SubAccount] | None = (), **kwargs: Any
    ) -> None:
        """``destinations`` fill the select; None means too many: the name is typed."""
        super().__init__(*args, **kwargs)
        self.searching = destinations is None
        if self.searching:
            self.fields["move_to_id"] = _search_field(
                self.fields["move_to_id"], kind="deletion", list_id="move-to-options"
            )
        else:
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
