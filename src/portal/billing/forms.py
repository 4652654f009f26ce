"""Forms of the billing pages people fill in: Resale prices (domain §8.1).

They shape input only: ``billing.resale`` checks the price (≥ 0, at most the currency's
decimals) and its messages show on the fields."""

from __future__ import annotations

from django import forms

# "99999999.9999" and some room for spaces: longer is never a price.
PRICE_MAX_LENGTH = 32
SEARCH_MAX_LENGTH = 120


def _price_input(**attrs: str) -> forms.TextInput:
    return forms.TextInput(
        attrs={"inputmode": "decimal", "autocomplete": "off", "maxlength": str(PRICE_MAX_LENGTH)}
        | attrs
    )


class ResaleDefaultForm(forms.Form):
    """The partner's default resale price; empty clears it."""

    default_resale_price = forms.CharField(
        label="Default resale price",
        required=False,
        max_length=PRICE_MAX_LENGTH,
        widget=_price_input(),
    )


class ResaleRowForm(forms.Form):
    """One sub-account's own resale price, edited in place; empty returns it to the
    default."""

    resale_price = forms.CharField(required=False, max_length=PRICE_MAX_LENGTH)


class ResaleSearchForm(forms.Form):
    q = forms.CharField(label="Search", required=False, max_length=SEARCH_MAX_LENGTH)
