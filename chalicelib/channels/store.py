"""The mobile H5 store page, one static file with the channel code filled in."""
from __future__ import annotations

import html
from functools import cache
from pathlib import Path


@cache
def _template() -> str:
    return (Path(__file__).parent / "static" / "store.html").read_text(encoding="utf-8")


def page(channel_code: str) -> str:
    return _template().replace("{{CHANNEL_CODE}}", html.escape(channel_code, quote=True))
