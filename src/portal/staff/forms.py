"""Forms of the staff pages. Services validate; these shape input."""

from __future__ import annotations

from decimal import Decimal

from django import forms

MAX_IMPORT_BYTES = 20 * 1024 * 1024


class PartnerSearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=120)


class PartnerCreateForm(forms.Form):
    name = forms.CharField(label="Partner name", max_length=120)
    timezone = forms.CharField(
        label="Timezone",
        max_length=64,
        initial="UTC",
        help_text="An IANA name such as America/New_York or Europe/Paris. Billing cycles "
        "and analytics days follow it.",
    )
    currency = forms.CharField(
        label="Currency", max_length=3, initial="USD", help_text="ISO 4217 code, e.g. USD or EUR."
    )
    line_price = forms.DecimalField(
        label="Price per line per month",
        initial=Decimal("50.00"),
        min_value=0,
        max_digits=12,
        decimal_places=4,
    )
    default_daily_limit = forms.IntegerField(
        label="Default daily limit",
        initial=50,
        min_value=1,
        max_value=100_000,
        help_text="New conversations per line per day, unless a line says otherwise.",
    )
    owner_email = forms.EmailField(
        label="Owner admin email",
        required=False,
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
        help_text="This person becomes the partner's admin and gets an email "
        "to set their password.",
    )


class InventoryImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="A header row with a “number” column (E.164, e.g. +14155550100) and an "
        "optional “area_code” column. UTF-8, at most 20 MB.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )

    def clean_file(self) -> str:
        """The file's text (UTF-8, with or without a byte-order mark)."""
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError("The file is larger than 20 MB; split it.")
        data = upload.read()
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError(
                f"The file is not UTF-8 text (byte {exc.start}); save the CSV as UTF-8."
            ) from None
