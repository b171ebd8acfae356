"""Channels: channel configuration and secrets, request signing, sandbox, channel pricing, the per-channel catalog and the H5 store page."""
