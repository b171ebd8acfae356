"""Channel Mall business code: domain rules, DynamoDB models and partner adapters."""
