"""HTTPS to an address that was checked, with the certificate still verified for the host's name.

A call to a channel goes to the IP literal ``endpoints`` checked (so a second DNS lookup can never
lead it elsewhere) with the ``Host`` header naming the channel's host. Over https this adapter makes
TLS send that name as SNI and verify the certificate against it, as it would for a URL with the name.
Imported only where a channel is called (``requests`` is not needed before).
"""
from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter


class PinnedHostAdapter(HTTPAdapter):
    """Connect to the host in the URL; for TLS (SNI and certificate check) use the ``Host`` header's name."""

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = urlsplit("//" + request.headers.get("Host", "")).hostname
        if host_params["scheme"] == "https" and name:
            # ``server_hostname`` alone: the ssl module then checks the certificate for this name itself
            # (``assert_hostname`` would switch that off on the shared default context).
            pool_kwargs["server_hostname"] = name  # part of urllib3's pool key: one pool per address and name
        return host_params, pool_kwargs


_session: requests.Session | None = None


def session() -> requests.Session:
    """One pooled session per container for every call to a channel (its API and its webhooks)."""
    global _session
    if _session is None:
        _session = requests.Session()
        _session.mount("https://", PinnedHostAdapter())
    return _session
