"""Settlement: two-sided statements per period (``statements``, pure), their run on Step Functions (``runs``), what
each party may fetch (``exports``), the channel's ledger and its reconciliation, the hourly invariant check
(``invariants``), operating data (``operating``), and their tables.

May import: core up to checkout (``tests/test_import_order.py``)."""
