"""Who reads which notifications (domain §8.4).

A person reads their own inbox: the rows addressed to them. An API key has no person
behind it: its inbox is the partner's shared one (the partner-wide notifications its
admins get, and the answers to requests and orders an API key made), narrowed to the
kinds its role may read elsewhere in the API (a viewer key sees no invoice being issued,
as it reads no invoices). Staff acting for a partner read that shared inbox too.

A partner's client (domain §8.2) logged in as a person has an inbox of its own: the
statements of its sub-accounts issued with each invoice, nothing else (alerts, requests,
orders and invoices are the reseller's). A client *key* has none: a key's inbox is the
partner's shared one, which a client must not read, so the whole area answers it 403.
"""

from __future__ import annotations

from collections.abc import Callable

from portal.accounts.policies import can_read_partner_areas, require
from portal.alerts.policies import can_read_alerts
from portal.billing.policies import can_read_invoices, can_read_statements
from portal.core.principal import Principal
from portal.core.roles import Role
from portal.notifications.models import Kind
from portal.workflows.policies import can_read_requests

CLIENT_REFUSAL = (
    "A client key has no notifications: a key reads its partner's shared inbox, which is "
    "not a client's."
)

# Who among a partner's people gets each partner-wide kind in their own inbox. Kinds not
# listed go to one person: the one who made the request or the order.
RECIPIENT_ROLES: dict[str, frozenset[Role]] = {
    Kind.ALERT_TRIGGERED: frozenset({Role.ADMIN, Role.MANAGER}),
    Kind.ALERT_RESOLVED: frozenset({Role.ADMIN, Role.MANAGER}),
    Kind.INVOICE_ISSUED: frozenset({Role.ADMIN, Role.BILLING}),
    Kind.STATEMENT_ISSUED: frozenset({Role.ADMIN, Role.BILLING}),
}


# For the shared inbox: whether a key (or staff) may read a kind, by the policy of the
# area it points to.
_READERS: dict[str, Callable[[Principal], bool]] = {
    Kind.ALERT_TRIGGERED: can_read_alerts,
    Kind.ALERT_RESOLVED: can_read_alerts,
    Kind.MERGE_APPROVED: can_read_requests,
    Kind.MERGE_REJECTED: can_read_requests,
    Kind.MERGE_COMPLETED: can_read_requests,
    Kind.DELETION_APPROVED: can_read_requests,
    Kind.DELETION_REJECTED: can_read_requests,
    Kind.DELETION_PURGED: can_read_requests,
    Kind.LINE_ORDER_FULFILLED: can_read_partner_areas,  # every role reads the orders
    Kind.INVOICE_ISSUED: can_read_invoices,
    Kind.STATEMENT_ISSUED: can_read_statements,
}


def can_have_inbox(principal: Principal) -> bool:
    """Everyone but a partner's client key (see the module)."""
    return can_read_partner_areas(principal) or principal.kind == "user"


def require_inbox(principal: Principal) -> None:
    """403 (logged) for a client key."""
    require(can_have_inbox(principal), CLIENT_REFUSAL)


def shared_kinds(principal: Principal) -> list[str]:
    """The kinds of the shared inbox ``principal`` (a key, or staff) may read."""
    return [kind for kind, reads in _READERS.items() if reads(principal)]
