"""The audit trail: one append-only event per state change."""
