"""Reseller Partner Portal."""
