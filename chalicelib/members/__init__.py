"""Members: members as we know them, sessions, payment password and OTP, and their tables (a signed entry link
becoming a session is ``chalicelib.callers.entry``).

May import: core, supply, channels, billing, partners (``tests/test_import_order.py``)."""
