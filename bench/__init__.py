"""Benchmarks that run against the local system (``python -m bench.<name>``)."""
