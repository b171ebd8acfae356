"""The supplier workbench page: one static file (``static/workbench.html``), no build step, served by the API
Lambda so its session cookie is same-origin with the supplier API it calls."""
from __future__ import annotations

from functools import cache
from pathlib import Path

# No other site may frame it (a framed page could be clicked through), and no link out carries its address.
HEADERS = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache", "X-Frame-Options": "DENY",
           "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                      "img-src 'self' data: blob: https: http:; connect-src 'self' https: http:; base-uri 'none'; "
                                      "form-action 'none'; frame-ancestors 'none'",  # uploads go to the bucket
           "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff"}


@cache
def page() -> str:
    return (Path(__file__).parent / "static" / "workbench.html").read_text(encoding="utf-8")
