"""Orders and fulfilment: orders, the per-supplier split, parcels and their states, refunds, partner order reads."""
