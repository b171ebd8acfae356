"""Points and checkout: quota periods and shards, wallets and points, carts, the checkout transaction, and their
tables.

May import: core up to orders (``tests/test_import_order.py``)."""
