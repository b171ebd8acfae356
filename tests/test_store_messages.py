"""The store's one message catalog (``chalicelib/channels/static/messages.json``): every text the store shows a
member has a key, and every key it uses exists in both zh-CN and en, with the same placeholders (issue 15,
item 5). Unit tests on the files themselves; the browser tests show the texts in use."""
from __future__ import annotations

import re

from chalicelib.channels import locales, store
from chalicelib.checkout import checkout
from chalicelib.orders import parcel_states, refunds

HTML = (store.STATIC / "store.html").read_text(encoding="utf-8")
SCRIPT = HTML[HTML.index("<script>"):]
CATALOG = store.messages()


def used_keys() -> set[str]:
    """Keys the page names literally: ``t("…")`` / ``has("…")`` in its script, ``data-i18n*`` in its markup."""
    keys = set(re.findall(r'\bt\("([a-z_.]+)"', SCRIPT))
    keys |= set(re.findall(r'\b(?:stat)\([^)]*"(points\.[a-z_]+)"\)', SCRIPT))
    keys |= set(re.findall(r'data-i18n(?:-label|-placeholder)?="([a-z_.]+)"', HTML))
    return {k for k in keys if not k.endswith(".")}  # "status." + s: a prefix, checked below


def test_the_catalog_has_exactly_the_store_languages_with_the_same_keys():
    assert set(CATALOG) == set(locales.LOCALES)
    assert set(CATALOG["zh-CN"]) == set(CATALOG["en"])
    for key in CATALOG["en"]:
        texts = [CATALOG[loc][key] for loc in locales.LOCALES]
        assert all(text.strip() for text in texts), key
        placeholders = {loc: set(re.findall(r"\{(\w+)\}", CATALOG[loc][key])) for loc in locales.LOCALES}
        assert placeholders["zh-CN"] == placeholders["en"], (key, placeholders)


def test_every_key_the_store_uses_is_in_both_catalogs():
    used = used_keys()
    assert len(used) > 150, len(used)  # the extraction found the page's keys, not nothing
    for loc in locales.LOCALES:
        missing = sorted(used - set(CATALOG[loc]))
        assert not missing, (loc, missing)


def test_every_state_and_refusal_the_store_names_by_prefix_has_its_text():
    """``statusText``, ``stockText``, ``refundText`` and ``friendly`` look keys up by prefix."""
    states = set(parcel_states.STATES) | {parcel_states.PAID, parcel_states.PARTIALLY_SHIPPED,
                                          parcel_states.PARTIALLY_REFUNDED} | {checkout.PAID, checkout.AWAITING,
                                                                               checkout.FAILED}
    wanted = {f"status.{s}" for s in states} | {f"stock.{s}" for s in ("in_stock", "low", "sold_out")}
    wanted |= {f"refund.{s}" for s in (refunds.REQUESTED, refunds.APPROVED, refunds.AWAITING_CHANNEL,
                                       refunds.REFUNDED, refunds.REJECTED)}
    # Refusals a member meets at checkout, in the cart and on a parcel, and the page's own checks.
    wanted |= {f"error.{c}" for c in ("insufficient_points", "quota_exhausted", "out_of_stock", "wrong_password",
                                      "payment_locked", "wrong_otp", "otp_expired", "address_required",
                                      "password_required", "code_required", "code_required_send", "busy",
                                      "network", "timeout", "illegal_transition", "channel_api_unavailable",
                                      "partner_unavailable")}
    for loc in locales.LOCALES:
        assert not sorted(wanted - set(CATALOG[loc])), loc


def test_no_member_facing_english_is_left_in_the_script():
    """Texts go through ``t``: a literal given as an element's text, label or placeholder is a symbol at most."""
    literal = r'"((?:[^"\\]|\\.)*)"'
    given = re.findall(r'(?:[{,]\s*(?:text|placeholder|"aria-label")\s*:|\.(?:textContent|title) =)\s*' + literal, SCRIPT)
    assert len(given) >= 5, given  # the pattern finds the page's literal texts (symbols such as "+" and "!")
    words = [g for g in given if re.search(r"[A-Za-z]{2,}", g)]
    assert not words, words


def test_the_page_embeds_the_catalog_safely():
    page = store.page("bank-a")
    assert "{{MESSAGES}}" not in page and "</script>" in page
    start = page.index('<script type="application/json" id="messages">') + len('<script type="application/json" id="messages">')
    block = page[start:page.index("</script>", start)]
    assert "</" not in block
    assert '"zh-CN"' in block and CATALOG["zh-CN"]["store.title"] in block
