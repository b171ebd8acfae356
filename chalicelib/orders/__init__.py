"""Orders and fulfilment: orders, the per-supplier split, parcels and their states (``parcel_states``, pure),
refunds, partner order reads, and their tables.

May import: core up to members. Declared exceptions (``tests/test_import_order.py``): points and quota given back
(``checkout``), book entries written with parcel events (``settlement.books``)."""
