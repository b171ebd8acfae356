"""Supply: suppliers and their API keys, their goods (review, revisions, the master pool, stock items), the loss
guard (``prices``, pure), supplier uploads (images, goods files; a shipments file is applied by
``orders.shipments``, handed in), and their tables.

May import: core (``tests/test_import_order.py``)."""
