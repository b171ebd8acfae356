"""The mobile H5 store page, one static file with the channel code and the message catalog filled in."""
from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path

STATIC = Path(__file__).parent / "static"


@cache
def messages() -> dict[str, dict[str, str]]:
    """Every member-facing text of the store, per language: ``{"en": {key: text}, "zh-CN": {...}}``."""
    return json.loads((STATIC / "messages.json").read_text(encoding="utf-8"))


@cache
def _template() -> str:
    # In a <script type="application/json"> block: "</" is written "<\/" so no text can close the block early.
    catalog = json.dumps(messages(), ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return (STATIC / "store.html").read_text(encoding="utf-8").replace("{{MESSAGES}}", catalog)


def page(channel_code: str) -> str:
    return _template().replace("{{CHANNEL_CODE}}", html.escape(channel_code, quote=True))
