"""Billing: what the platform charges its channels."""
