"""Points and checkout: quota periods and shards, wallets and points, carts, the checkout transaction."""
