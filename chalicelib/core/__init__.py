"""Core, the ground floor: how a table is declared (``models``), transactions and retries (``tx``), the clock,
sharded counters, errors, config, HTTP plumbing (``web``, ``routing``, ``function_url``), request schemas, the audit
trail, rate limits, S3, observability, and core's own tables.

May import: nothing of ``chalicelib`` but core (``tests/test_import_order.py``)."""
