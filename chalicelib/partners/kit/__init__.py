"""The channel integration kit: the OpenAPI document, the per-channel guide and the signing snippets."""
