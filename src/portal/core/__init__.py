"""Plumbing shared by every app: errors, clock, request context, principals, tenancy."""
