"""Shared ground: PynamoDB models and write helpers, errors, config, HTTP plumbing, request schemas, audit, observability."""
