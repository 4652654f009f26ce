"""The Webhooks page's forms. The services check everything (URL, addresses, events)."""

from __future__ import annotations

from typing import Any

from django import forms

from portal.webhooks import catalogue
from portal.webhooks.addresses import MAX_URL_LENGTH
from portal.webhooks.models import DeliveryStatus
from portal.webhooks.services import DESCRIPTION_MAX

EVENT_CHOICES = [(code, f"{words} ({code})") for code, words in catalogue.EVENT_TYPES.items()]


class EndpointForm(forms.Form):
    """Add or edit an endpoint: its URL, a description and the events it receives."""

    url = forms.CharField(
        label="URL",
        max_length=MAX_URL_LENGTH,
        help_text="The https:// address of your system that receives a POST per event.",
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    description = forms.CharField(label="Description", required=False, max_length=DESCRIPTION_MAX)
    all_events = forms.BooleanField(label="All events, including types added later", required=False)
    events = forms.MultipleChoiceField(
        label="Events",
        choices=EVENT_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["enabled"] = forms.BooleanField(
                label="Enabled",
                required=False,
                help_text="A disabled endpoint receives nothing until it is enabled again.",
            )

    def chosen_events(self) -> list[str]:
        if self.cleaned_data.get("all_events"):
            return [catalogue.ALL]
        return list(self.cleaned_data.get("events") or [])

    @staticmethod
    def initial_for(endpoint: Any) -> dict[str, Any]:
        everything = catalogue.ALL in endpoint.events
        return {
            "url": endpoint.url,
            "description": endpoint.description,
            "all_events": everything,
            "events": [] if everything else list(endpoint.events),
            "enabled": endpoint.enabled,
        }


class DeliveryFilterForm(forms.Form):
    """The delivery log's filters: status and event type."""

    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *DeliveryStatus.choices]
    )
    event_type = forms.ChoiceField(
        label="Event type",
        required=False,
        choices=[
            ("", "Any event"),
            *((c, c) for c in catalogue.EVENT_TYPES),
            (catalogue.PING, "ping"),
        ],
    )
