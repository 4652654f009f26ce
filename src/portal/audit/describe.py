"""Audit events in words: every action code's name, who acted, and the details as a sentence.

The log stores machine codes and raw data (the API returns them as they are, domain §6);
pages read them through here, so a person sees "Merge requested", "the merge worker" and
"Client A and Client B into Client C" instead of ``merge_request.create``, ``task:merge``
and ``['…']``. Every code any service records has its words in :data:`ACTION_WORDS` (a
test greps the services for codes without words). :func:`describe_events` fills a page of
events with one query for the sub-account names and one for the partners' currencies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.billing.money import format_money
from portal.core.localtime import format_local
from portal.core.principal import Principal

ACTION_WORDS: dict[str, str] = {
    "sub_account.create": "Sub-account created",
    "sub_account.update": "Sub-account changed",
    "line.activate": "Line activated",
    "line.assign": "Line added to a sub-account",
    "line.move": "Line moved",
    "line.merge": "Line moved by a merge",
    "line.update": "Line details changed",
    "line.disconnect": "Line disconnected",
    "line_order.create": "Lines requested",
    "line_order.fulfil": "Line request fulfilled",
    "line_order.cancel": "Line request cancelled",
    "inventory.import": "Numbers imported",
    "partner.create": "Partner created",
    "partner.billing_update": "Billing settings changed",
    "partner.settings_update": "Partner settings changed",
    "resale_price.set": "Resale price changed",
    "user.create": "User added",
    "staff.create": "Staff user added",
    "user.role_change": "User's role changed",
    "user.deactivate": "User deactivated",
    "user.reactivate": "User reactivated",
    "user.password_set": "Password set",
    "api_key.create": "API key created",
    "api_key.revoke": "API key revoked",
    "invoice.issue": "Invoice issued",
    "invoice.finalize": "Invoice finalised",
    "discount.grant": "Discount granted",
    "discount.remove": "Discount removed",
    "credit.grant": "Credit granted",
    "merge_request.create": "Merge requested",
    "merge_request.approve": "Merge approved",
    "merge_request.reject": "Merge rejected",
    "merge_request.cancel": "Merge request cancelled",
    "merge_request.start": "Merge started",
    "merge_request.resume": "Merge resumed",
    "merge_request.complete": "Merge completed",
    "merge_request.fail": "Merge stopped by an error",
    "deletion_request.create": "Deletion requested",
    "deletion_request.approve": "Deletion approved",
    "deletion_request.reject": "Deletion rejected",
    "deletion_request.cancel": "Deletion request cancelled",
    "deletion_request.restore": "Sub-account restored",
    "deletion_request.purge": "Sub-account purged",
    "alert_rule.create": "Alert rule added",
    "alert_rule.update": "Alert rule changed",
    "alert_rule.delete": "Alert rule deleted",
    "alert.trigger": "Alert fired",
    "alert.resolve": "Alert resolved",
    "webhook_endpoint.create": "Webhook endpoint added",
    "webhook_endpoint.update": "Webhook endpoint changed",
    "webhook_endpoint.delete": "Webhook endpoint deleted",
    "webhook_endpoint.rotate_secret": "Webhook signing secret rotated",
    "webhook_endpoint.test": "Webhook test event sent",
    "webhook_endpoint.disable": "Webhook endpoint disabled",
    "notification.read": "Notification marked read",
    "notification.read_all": "Notifications marked read",
    "webhook_delivery.retry": "Webhook delivery retried",
}

# The machine principals' labels (``Principal.system(label)``) in words.
_SYSTEM_ACTORS = {
    "task:merge": "the merge worker",
    "task:order-fulfilment": "order fulfilment",
    "job:retention-purge": "the retention purge job",
    "job:issue_due_invoices": "the billing job",
    "job:finalize_due_invoices": "the invoice finalising job",
    "job:precompute_proration_accruals": "the billing job",
    "job:evaluate_alerts": "the alert checks",
    "worker:webhooks": "the webhook sender",
    "cli:demo": "the demo setup",
    "simulator": "the traffic simulator",
    "system": "the system",
}

_FIELD_WORDS = {
    "name": "name",
    "contact_name": "contact name",
    "contact_email": "contact email",
    "contact_phone": "contact phone",
    "internal_reference": "internal reference",
    "notes": "notes",
    "label": "label",
    "user_name": "user name",
    "user_email": "user email",
    "daily_limit": "daily limit",
    "status": "status",
    "role": "role",
    "line_price": "line price",
    "currency": "currency",
    "timezone": "timezone",
    "sub_account_id": "sub-account",
    "display_name": "display name for clients",
    "self_service_requests": "self-service approvals",
    "default_daily_limit": "default daily limit for new lines",
    "deletion_retention_days": "days a deleted sub-account can be restored",
    "url": "URL",
    "events": "events",
    "description": "description",
    "metric": "figure",
    "comparator": "condition",
    "threshold": "threshold",
    "window_days": "days watched",
    "enabled": "enabled",
}

# Alert rules' figures in words; rates and usage are fractions in the data (0.8 = 80 %).
_METRIC_WORDS = {
    "volume_limit_usage": "Volume limit usage",
    "response_rate": "Response rate",
    "over_pressured_line_days": "Over-pressured line-days",
    "available_lines": "Lines in Available",
}
_FRACTIONS = {"volume_limit_usage", "response_rate"}
_RESOLVED_BECAUSE = {
    "rule_changed": "its rule was changed",
    "rule_disabled": "its rule was paused",
    "rule_deleted": "its rule was deleted",
    "sub_account_gone": "the sub-account is no longer active",
}

_STATUS_WORDS = {
    "pending_approval": "pending approval",
    "pending_deletion": "pending deletion",
    "fulfilled": "fulfilled",
    "partially_fulfilled": "partly fulfilled",
}


def action_words(code: str) -> str:
    """The action's words; an unknown code (an old row) reads as its parts."""
    return ACTION_WORDS.get(code) or code.replace("_", " ").replace(".", ": ").capitalize()


def actor_words(label: str, actor_type: str = "") -> str:
    """Who acted: a person's email, an API key by its name, a job or worker in words."""
    if label in _SYSTEM_ACTORS:
        return _SYSTEM_ACTORS[label]
    kind, _, rest = label.partition(":")
    if kind == "key" and rest:
        _prefix, _, name = rest.partition(" (")
        return f"API key “{name.rstrip(')')}”" if name else f"API key {rest}"
    if kind == "job" and rest:
        return f"the {rest.replace('_', ' ').replace('-', ' ')} job"
    if kind == "cli" and rest:
        return f"the “portal {rest}” command"
    if kind == "task" and rest:
        return f"the {rest.replace('_', ' ')} worker"
    return label


def as_list(items: Iterable[Any]) -> str:
    """ "A", "A and B", "A, B and C"."""
    words = [str(i) for i in items]
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


class _Reader:
    """What a sentence needs besides the event: names and currencies, read once a page."""

    def __init__(self, names: dict[int, str], currencies: dict[int, str], tz: str) -> None:
        self.names, self.currencies, self.tz = names, currencies, tz

    def sub(self, pk: Any) -> str:
        if pk in (None, ""):
            return "nowhere"
        return self.names.get(pk, f"sub-account {pk}")

    def money(self, event: AuditEvent, value: Any, currency: str | None = None) -> str:
        code = currency or self.currencies.get(event.partner_id or 0, "")
        try:
            return format_money(Decimal(str(value)), code) if code else str(value)
        except (InvalidOperation, ValueError):
            return str(value)

    def value(self, key: str, value: Any) -> str:
        if key.endswith("sub_account_id") or key in ("move_to_id", "target_id"):
            return self.sub(value)
        if value in (None, ""):
            return "none"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list | tuple):
            return as_list(self.value(key, v) for v in value)
        if isinstance(value, str):
            when = _instant(value)
            if when is not None:
                return format_local(when, self.tz)
            if key in ("status", "role"):
                return _STATUS_WORDS.get(value, value.replace("_", " "))
            return f"“{value}”"
        return f"{value:,}" if isinstance(value, int) else str(value)


def _instant(text: str) -> dt.datetime | None:
    """An ISO timestamp stored in the data (aware), else None."""
    if len(text) < 19 or text[4] != "-" or "T" not in text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else None


def _changes(r: _Reader, before: dict[str, Any], after: dict[str, Any]) -> str:
    """ "contact name changed from “A” to “B”; label set to “C”"."""
    parts = []
    for key, new in after.items():
        field = _FIELD_WORDS.get(key, key.replace("_", " "))
        if key in before:
            if before[key] == new:
                continue
            parts.append(f"{field} {r.value(key, before[key])} → {r.value(key, new)}")
        else:
            parts.append(f"{field} {r.value(key, new)}")
    return "; ".join(parts)


def _figure(metric: Any, value: Any) -> str:
    """A rule's threshold or an alert's value: "80 %" for rates and usage, "12" else."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if metric in _FRACTIONS:
        return f"{format((number * 100).normalize(), 'f')}\u00a0%"
    return f"{number.normalize():,f}"


def _rule_sentence(r: _Reader, rule: dict[str, Any]) -> str:
    """ "Volume limit usage above 80 % over the last 7 days, each sub-account"."""
    metric = rule.get("metric")
    words = f"{_METRIC_WORDS.get(metric, metric)} {rule.get('comparator')} "
    words += _figure(metric, rule.get("threshold"))
    if metric == "available_lines":
        return words
    days = rule.get("window_days")
    words += " today" if days == 1 else f" over the last {days} days"
    scope = r.sub(rule["sub_account_id"]) if rule.get("sub_account_id") else "each sub-account"
    paused = "" if rule.get("enabled", True) else " (paused)"
    return f"{words}, {scope}{paused}"


def _with_reason(text: str, data: dict[str, Any]) -> str:
    reason = data.get("reason") or (data.get("after") or {}).get("reason")
    return f"{text} Reason: “{reason}”." if reason else text


def _sentence(r: _Reader, e: AuditEvent) -> str:
    d = e.data or {}
    before, after = d.get("before") or {}, d.get("after") or {}
    a = e.action
    n = d.get("number")
    if a == "line.assign":
        details = _changes(r, {}, {k: v for k, v in after.items() if k != "sub_account_id"})
        text = f"{n} added to {r.sub(after.get('sub_account_id'))}"
        return f"{text}: {details}." if details else f"{text}."
    if a in ("line.move", "line.merge"):
        text = f"{n} moved from {r.sub(before.get('sub_account_id'))} to "
        text += f"{r.sub(after.get('sub_account_id'))}"
        if d.get("merge_request_id"):
            text += f" by merge request #{d['merge_request_id']}"
        if d.get("deletion_request_id"):
            text += f" for deletion request #{d['deletion_request_id']}"
        details = {k: v for k, v in before.items() if k != "sub_account_id"}
        dropped = [
            f"{_FIELD_WORDS.get(k, k)} {r.value(k, v)}"
            for k, v in details.items()
            if v not in (None, "") and after.get(k) in (None, "")
        ]
        if dropped:
            text += f"; back in Available it dropped its {as_list(dropped)}"
        reset = _changes(
            r, details, {k: v for k, v in after.items() if k in details and v not in (None, "")}
        )
        if reset:
            text += f"; {reset}"
        return text + "."
    if a == "line.disconnect":
        text = f"{n} disconnected from {r.sub(before.get('sub_account_id'))}"
        if d.get("deletion_request_id"):
            text += f" for deletion request #{d['deletion_request_id']}"
        return text + "."
    if a == "line.update":
        return f"{n}: {_changes(r, before, after)}."
    if a == "line.activate":
        return f"{n} delivered for line request #{d.get('order_id')}."
    if a == "line_order.create":
        area = f" in area code {after['area_code']}" if after.get("area_code") else ""
        return f"{after.get('quantity')} lines requested{area}."
    if a == "line_order.fulfil":
        count = len(d.get("line_ids") or [])
        return f"{count} lines delivered; {after.get('fulfilled_count')} delivered in all."
    if a == "inventory.import":
        return f"{d.get('added', 0):,} numbers added; {d.get('rejected', 0):,} rows refused."
    if a == "partner.create":
        return (
            f"{after.get('name')}: prices in {after.get('currency')}, times in "
            f"{after.get('timezone')}, "
            f"{r.money(e, after.get('line_price'), after.get('currency'))} a line."
        )
    if a == "user.create":
        return f"{after.get('email')} added as {r.value('role', after.get('role'))}."
    if a == "staff.create":
        return f"{after.get('email')} added to the provider's staff."
    if a == "user.role_change":
        return f"{d.get('email')}: {_changes(r, before, after)}."
    if a == "user.deactivate":
        ended = d.get("sessions_ended") or 0
        return f"{d.get('email')} may no longer log in; {ended} sessions ended."
    if a == "user.reactivate":
        return f"{d.get('email')} may log in again."
    if a == "user.password_set":
        via = f" ({str(d['via']).replace('_', ' ')})" if d.get("via") else ""
        return f"{d.get('email')} set a password{via}."
    if a == "api_key.create":
        role = r.value("role", after.get("role"))
        return f"Key “{after.get('name')}” for the {role} role, starting {after.get('prefix')}."
    if a == "api_key.revoke":
        return "The key no longer works."
    if a == "invoice.issue":
        return f"Invoice {n} for {_month(d.get('period_month'))}: {r.money(e, d.get('total'))}."
    if a == "invoice.finalize":
        return f"Invoice {n} is final and never changes."
    if a in ("discount.grant", "discount.remove"):
        disc = after if a == "discount.grant" else before
        value = disc.get("value")
        amount = f"{value} %" if disc.get("kind") == "percent" else r.money(e, value)
        scope = r.sub(disc["sub_account_id"]) if disc.get("sub_account_id") else "every sub-account"
        months = _month(disc.get("first_month"))
        months += f" to {_month(disc['last_month'])}" if disc.get("last_month") else " on"
        return f"“{disc.get('name')}”: {amount} off for {scope}, {months}."
    if a == "credit.grant":
        whom = r.sub(after["sub_account_id"]) if after.get("sub_account_id") else "the partner"
        money = r.money(e, after.get("amount"), after.get("currency"))
        return _with_reason(f"{money} credit for {whom}.", {"reason": after.get("reason")})
    if a == "merge_request.create":
        return f"{as_list(after.get('source_names') or [])} into {after.get('target_name')}."
    if a == "merge_request.approve":
        return _with_reason(f"{after.get('lines_total', 0):,} lines to move.", d)
    if a == "merge_request.start":
        return f"Moving {d.get('lines_total', 0):,} lines ({d.get('lines_moved', 0):,} moved)."
    if a == "merge_request.resume":
        return f"Continues where it stopped ({before.get('failure') or 'an error'})."
    if a == "merge_request.complete":
        text = f"{as_list(d.get('source_names') or [])} merged into {r.sub(d.get('target_id'))}"
        text += f": {d.get('lines_moved', 0):,} lines moved"
        if d.get("credit_moved"):
            text += f"; {r.money(e, d['credit_moved'])} of credit moved to the target"
        return text + "."
    if a == "merge_request.fail":
        return f"Stopped after {d.get('lines_moved', 0):,} lines: {d.get('error')}."
    if a == "deletion_request.create":
        name = after.get("sub_account_name")
        count = after.get("line_count") or 0
        if after.get("line_disposition") == "move":
            lines = f"its {count:,} lines to move to {r.sub(after.get('move_to_id'))}"
        elif after.get("line_disposition") == "disconnect":
            lines = f"its {count:,} lines to be disconnected"
        else:
            lines = "it holds no lines"
        return _with_reason(f"Delete {name}; {lines}.", d)
    if a == "deletion_request.approve":
        text = f"{d.get('sub_account_name')} is pending deletion"
        if after.get("purge_after"):
            text += f" until {r.value('purge_after', after['purge_after'])}"
        text += f"; {after.get('lines_disposed') or 0:,} lines disposed of"
        if d.get("credit_moved"):
            text += f"; {r.money(e, d['credit_moved'])} of credit moved to the partner"
        return _with_reason(text + ".", d)
    if a in ("merge_request.reject", "deletion_request.reject"):
        return _with_reason("", d).strip() or "No reason given."
    if a in ("merge_request.cancel", "deletion_request.cancel"):
        return _with_reason("", d).strip()
    if a == "deletion_request.restore":
        return "The sub-account is active again, empty."
    if a == "deletion_request.purge":
        erased = [_FIELD_WORDS.get(f, f) for f in d.get("erased_fields") or []]
        what = f"its {as_list(erased)} erased" if erased else "it had no contact details"
        return f"{d.get('sub_account_name')} purged: {what}; the name stays on invoices."
    if a in ("alert_rule.create", "alert_rule.delete"):
        return _rule_sentence(r, after if a == "alert_rule.create" else before) + "."
    if a == "alert_rule.update":
        parts = []
        for key, new in after.items():
            old = before.get(key)
            if key == "threshold":
                metric = after.get("metric") or d.get("metric")
                old, new = _figure(metric, old), _figure(metric, new)
            elif key == "metric":
                old, new = _METRIC_WORDS.get(old, old), _METRIC_WORDS.get(new, new)
            elif key == "sub_account_id":
                old = r.sub(old) if old else "each sub-account"
                new = r.sub(new) if new else "each sub-account"
            elif key == "enabled":
                old, new = ("yes" if old else "no"), ("yes" if new else "no")
            parts.append(f"{_FIELD_WORDS.get(key, key)} {old} → {new}")
        text = "; ".join(parts)
        return text[:1].upper() + text[1:] + "." if text else ""
    if a == "alert.trigger":
        metric = d.get("metric")
        text = f"{_METRIC_WORDS.get(metric, metric)} {_figure(metric, d.get('value'))} is "
        text += f"{d.get('comparator')} {_figure(metric, d.get('threshold'))}"
        if metric != "available_lines":
            days = d.get("window_days")
            text += " today" if days == 1 else f" over the last {days} days"
        return f"{text} (rule #{d.get('rule_id')})."
    if a == "alert.resolve":
        metric = d.get("metric")
        because = _RESOLVED_BECAUSE.get(d.get("because") or "")
        if because:
            return f"Resolved because {because} (rule #{d.get('rule_id')})."
        return (
            f"{_METRIC_WORDS.get(metric, metric)} back to {_figure(metric, d.get('value'))}, "
            f"no longer {d.get('comparator')} {_figure(metric, d.get('threshold'))} "
            f"(rule #{d.get('rule_id')})."
        )
    if a.startswith(("webhook_endpoint.", "webhook_delivery.")):
        return _webhook_sentence(r, a, d, before, after)
    changes = _changes(r, {} if a == "sub_account.create" else before, after)
    return (changes[:1].upper() + changes[1:] + ".") if changes else ""


def _webhook_sentence(
    r: _Reader, a: str, d: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
) -> str:
    if a == "webhook_endpoint.rotate_secret":
        until = r.value("previous_secret_until", d.get("previous_secret_until"))
        return f"A new signing secret; the previous one also signs until {until}."
    if a == "webhook_endpoint.test":
        return "A ping event was queued for the endpoint."
    if a == "webhook_endpoint.delete":
        return f"{before.get('url')} deleted with its delivery log."
    if a == "webhook_endpoint.disable":
        since = r.value("failing_since", d.get("failing_since"))
        return f"{d.get('url')} failed every delivery since {since} and was disabled."
    if a == "webhook_delivery.retry":
        return f"The {d.get('event_type')} delivery is sent again."
    changes = _changes(r, before, after)
    return (changes[:1].upper() + changes[1:] + ".") if changes else ""


def _month(text: Any) -> str:
    """ "2026-11" → "November 2026"."""
    try:
        return f"{dt.date.fromisoformat(f'{text}-01'):%B %Y}"
    except (TypeError, ValueError):
        return str(text)


def _sub_account_ids(events: Sequence[AuditEvent]) -> set[int]:
    ids: set[int] = set()
    for e in events:
        ids.update(i for i in (e.sub_account_id, e.other_sub_account_id) if i)
        for part in (
            e.data or {},
            (e.data or {}).get("before") or {},
            (e.data or {}).get("after") or {},
        ):
            for key in ("sub_account_id", "move_to_id", "target_id"):
                if isinstance(part.get(key), int):
                    ids.add(part[key])
    return ids


def describe_events(principal: Principal, events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """Give each event ``action_label``, ``actor_words``, ``summary`` (a sentence) and
    ``object_label``: two queries for the page, whatever its length. Times read in the
    active timezone (the partner's, on its pages)."""
    from portal.partners.models import Partner, SubAccount

    events = list(events)
    names = {
        pk: ("Available" if kind == "available" else name)
        for pk, name, kind in SubAccount.objects.visible_to(principal)
        .filter(pk__in=_sub_account_ids(events))
        .values_list("pk", "name", "kind")
    }
    partner_ids = {e.partner_id for e in events if e.partner_id}
    currencies = dict(Partner.objects.filter(pk__in=partner_ids).values_list("pk", "currency"))
    reader = _Reader(names, currencies, str(timezone.get_current_timezone()))
    for event in events:
        event.action_label = action_words(event.action)
        event.actor_words = actor_words(event.actor_label, event.actor_type)
        event.summary = _sentence(reader, event)
        event.object_label = _object_label(reader, event)
    return events


_OBJECT_WORDS: dict[str, Callable[[AuditEvent], str]] = {
    "merge_request": lambda e: f"Merge request #{e.object_id}",
    "deletion_request": lambda e: f"Deletion request #{e.object_id}",
    "line_order": lambda e: f"Line request #{e.object_id}",
    "invoice": lambda e: f"Invoice {(e.data or {}).get('number') or e.object_id}",
    "credit_entry": lambda e: "Credit",
    "discount": lambda e: "Discount",
    "api_key": lambda e: "API key",
    "user": lambda e: (e.data or {}).get("email") or "User",
    "partner": lambda e: "Partner",
    "inventory": lambda e: "Number inventory",
    "alert_rule": lambda e: f"Alert rule #{e.object_id}",
    "alert": lambda e: f"Alert #{e.object_id}",
    "webhook_endpoint": lambda e: f"Webhook endpoint #{e.object_id}",
    "webhook_delivery": lambda e: f"Webhook delivery #{e.object_id}",
}


def _object_label(r: _Reader, e: AuditEvent) -> str:
    if e.object_type == "line":
        return str((e.data or {}).get("number") or f"Line {e.object_id}")
    if e.object_type == "sub_account":
        return r.names.get(e.sub_account_id or 0, f"Sub-account {e.object_id}")
    words = _OBJECT_WORDS.get(e.object_type)
    return words(e) if words else e.object_type.replace("_", " ").capitalize()
