"""Supply: suppliers and their API keys, their goods (review, revisions, the master pool, stock items), goods and
shipment imports, and their tables.

May import: core. Declared exceptions (``tests/test_import_order.py``): the loss guard of ``channels.pricing``, and
``orders.parcels`` for a shipment import."""
