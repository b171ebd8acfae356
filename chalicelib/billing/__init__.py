"""Billing: what the platform charges its channels: plans and the prepaid balance (``billing``), the daily
counters fees are computed from (``metering``), the fee line of a channel's statement (``fees``), and their tables.

May import: core, supply, channels (``tests/test_import_order.py``)."""
