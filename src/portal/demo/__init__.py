"""Demo data for `portal demo`: built through the services, deterministic."""
