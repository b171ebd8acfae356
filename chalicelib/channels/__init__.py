"""Channels: channel configuration and secrets, request signing (pure), the sandbox, channel pricing (pure) and the
sub-pools priced by it (``pools``), the per-channel catalog and the H5 store page, and their tables.

May import: core, supply. Declared exceptions (``tests/test_import_order.py``): the channel's quota (``checkout``),
its API address, webhook keys and breakers (``partners``), settlement periods for a rule change."""
