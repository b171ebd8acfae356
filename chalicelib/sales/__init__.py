"""Flash sales: a timed offer of one SKU at a sale price, from an allotment set aside from its stock."""
