"""Channels: channel configuration and secrets, where its back end may be (``endpoints``), its settlement rule day by
day (``settlement_rules``, pure), request signing and webhook signatures (pure), the sandbox, channel pricing (pure)
and the sub-pools priced by it (``pools``), the per-channel catalog and the H5 store page, and their tables.

May import: core, supply. Declared exception (``tests/test_import_order.py``): the channel's quota (``checkout``)."""
