"""Users, partner memberships and roles, API keys, idempotency records, login."""
