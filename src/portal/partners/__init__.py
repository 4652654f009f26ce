"""Partners (tenants) and their sub-accounts, the Available pool included."""
