"""Callers: who is calling and with which proof (ops, a supplier's key, a member's session, a channel's signed
server, a sandbox's logged calls), decided in ``callers`` alone; ``entry`` turns a signed link or one-time code
into a member session.

Above every area: may import any of them, and none of them imports it; ``routes`` (each area's HTTP door) and
``app.py`` stand above it (``tests/test_import_order.py``)."""
