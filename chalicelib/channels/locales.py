"""The store's languages: which one a member's request is in, and goods' text in it.

A channel's ops set the store's default language (``Channel.default_locale``); a member may pick the other
(the store keeps the choice in a cookie and asks the API with ``lang``). Goods carry a title and description
per language (``Goods.locales``, from the supplier); a language the supplier gave nothing for shows the plain
``title`` and ``description``, so goods from before, or from a supplier writing one language, still show."""
from __future__ import annotations

from typing import Any, Mapping

from chalicelib.core.errors import Unprocessable

LOCALES = ("zh-CN", "en")
DEFAULT = "en"  # a channel whose ops never chose one: the store as it was before it had languages


def requested(asked: str | None, channel_default: str | None) -> str:
    """The language a member's request asks for (``lang``), refused when it is not one the store has (a
    typo answers 422, not quietly another language), else the channel's default."""
    if asked is not None and asked not in LOCALES:
        raise Unprocessable("validation_error", f"lang must be one of {', '.join(LOCALES)}", "lang")
    return pick(asked, channel_default)


def pick(asked: str | None, channel_default: str | None) -> str:
    """The member's language if it is one the store has, else the channel's, else ``DEFAULT``."""
    if asked in LOCALES:
        return str(asked)
    return channel_default if channel_default in LOCALES else DEFAULT


def _texts(locales: Any) -> Mapping[str, Mapping[str, str]]:
    if not locales:
        return {}
    return locales.as_dict() if hasattr(locales, "as_dict") else dict(locales)


def text_of(title: str, description: str | None, locales: Any, locale: str) -> tuple[str, str]:
    """(title, description) in ``locale``: the supplier's text for it, else the plain fields."""
    own = _texts(locales).get(locale) or {}
    return (own.get("title") or title, own.get("description") or description or "")


def matches(title: str, locales: Any, keyword: str) -> bool:
    """A search keyword found in the title in any language (so 茶 finds tea whichever language is shown)."""
    wanted = keyword.casefold()
    return any(wanted in t.casefold() for t in [title, *(str(v.get("title") or "") for v in _texts(locales).values())])
