"""Billing: prices, invoices issued in advance per month, prorations, discounts, credits."""
