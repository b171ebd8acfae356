"""Partners: calls to the channels' back ends (pinned, signed, behind breakers), the outbox and webhooks, the orders
stream's figures, the integration kit (``kit/``), and their tables.

May import: core, supply, channels, billing (``tests/test_import_order.py``)."""
