"""The workbench sign-in rules, pure (``supply.signin_rules``)."""
from __future__ import annotations

from chalicelib.supply import signin_rules as rules

GOOD = "A" * 43


def test_tokens_have_one_shape_per_kind():
    assert rules.well_formed(f"wbl_{GOOD}", rules.LINK_PREFIX)
    assert not rules.well_formed(f"wbs_{GOOD}", rules.LINK_PREFIX)  # a session is not a link
    for bad in (None, "", "wbl_", f"wbl_{GOOD}x", f"wbl_{GOOD[:-1]}", f"wbl_{GOOD[:-1]}%", f"WBL_{GOOD}"):
        assert not rules.well_formed(bad, rules.LINK_PREFIX), bad
    assert rules.token_hash("a") != rules.token_hash("b") and len(rules.token_hash("a")) == 64


def test_a_link_is_refused_once_used_or_expired_used_first():
    assert rules.link_refusal(100, False, 99.9) is None
    assert rules.link_refusal(100, False, 100) == "signin_link_expired"
    assert rules.link_refusal(100, True, 50) == "signin_link_used"
    assert rules.link_refusal(100, True, 500) == "signin_link_used"
    assert rules.session_refusal(100, 99) is None and rules.session_refusal(100, 100) == "workbench_session_expired"


def test_only_state_changing_calls_need_the_csrf_token_and_it_must_match():
    for method in ("GET", "HEAD", "OPTIONS", "get"):
        assert rules.csrf_refusal(method, None, "t") is None
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert rules.csrf_refusal(method, None, "t") == "csrf_token_required"
        assert rules.csrf_refusal(method, "", "t") == "csrf_token_required"
        assert rules.csrf_refusal(method, "u", "t") == "csrf_token_invalid"
        assert rules.csrf_refusal(method, "tö", "t") == "csrf_token_invalid"  # non-ASCII: refused, not a 500
        assert rules.csrf_refusal(method, "t", "t") is None


def test_the_cookie_is_httponly_strict_and_secure_outside_local():
    assert rules.cookie("v", 60, True) == "cm_supplier=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
    assert rules.cookie("v", 60, False) == "cm_supplier=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
    assert rules.cleared_cookie(True).startswith("cm_supplier=; Path=/; Max-Age=0;")
    assert rules.cookie_value("cm_session=m; cm_supplier=s1; x=y") == "s1"
    assert rules.cookie_value("cm_supplier=; other=1") is None
    assert rules.cookie_value(None) is None and rules.cookie_value("xcm_supplier=1") is None
