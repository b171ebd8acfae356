"""Routes: the HTTP door of each area, one Chalice Blueprint per area (``supply``, ``channels``, ``members``,
``checkout``, ``orders``, ``partners``, ``kit``, ``settlement``), registered by ``app.py``. A view asks ``callers`` who
is calling, then makes one call into its area; the areas themselves never see a request.

Above ``callers`` and every area: may import any of them, and only ``app.py`` imports it
(``tests/test_import_order.py``)."""
