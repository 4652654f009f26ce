"""Forms for sub-account pages. Services do the real validation; these shape input."""

from __future__ import annotations

from django import forms

NAME_HINT = 'Recommended: "Client – Use Case", e.g. "Client ABC – Sales Campaign".'


def name_pattern_warning(name: str) -> str:
    """A soft warning when a name does not follow "Client – Use Case"; never an error."""
    text = (name or "").strip()
    if not text:
        return ""
    if any(sep in text for sep in (" – ", " — ", " - ")):
        return ""
    return 'Tip: names like "Client ABC – Sales Campaign" keep clients and use cases easy to find.'


class SubAccountForm(forms.Form):
    name = forms.CharField(label="Sub-account name", max_length=200, help_text=NAME_HINT)
    contact_name = forms.CharField(label="Contact name", required=False, max_length=200)
    contact_email = forms.CharField(
        label="Contact email",
        required=False,
        max_length=300,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    contact_phone = forms.CharField(
        label="Contact phone",
        required=False,
        max_length=40,
        help_text="With country code, e.g. +1 415 555 0100.",
        widget=forms.TextInput(attrs={"type": "tel"}),
    )
    internal_reference = forms.CharField(label="Internal reference", required=False, max_length=200)
    notes = forms.CharField(label="Notes", required=False, widget=forms.Textarea(attrs={"rows": 3}))


class SubAccountFilterForm(forms.Form):
    SORTS = [
        ("name", "Name (A–Z)"),
        ("-name", "Name (Z–A)"),
        ("-lines", "Most lines"),
        ("lines", "Fewest lines"),
        ("-created", "Newest"),
    ]
    q = forms.CharField(label="Search", required=False, max_length=120)
    sort = forms.ChoiceField(label="Sort by", choices=SORTS, required=False)
