"""Supply: suppliers, their goods and review, the master pool, goods and shipment imports."""
