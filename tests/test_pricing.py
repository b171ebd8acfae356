"""Unit tests of chalicelib.channels.pricing: integer arithmetic in fen and basis points, rounding up."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from chalicelib.channels.pricing import Markup, SkuPrice, points_for, rule_price, sku_price
from chalicelib.core.errors import Unprocessable
from chalicelib.supply.prices import guard_loss


def _exact_markup(settlement: int, bps: int, fixed: int) -> int:
    return math.ceil(Fraction(settlement * (10_000 + bps), 10_000)) + fixed


@pytest.mark.parametrize("settlement,markup,expected", [
    (1000, Markup(platform_bps=1000), 1100),                       # exact: no rounding
    (1234, Markup(60, 500, 333, 7), 1352),                         # 1344.1962 -> 1345, + 7
    (1, Markup(payment_bps=1), 2),                                  # 1.0001 -> 2: any fraction of a fen rounds up
    (9999, Markup(payment_bps=1), 10000),                           # 9999.9999 -> 10000
    (10000, Markup(payment_bps=1), 10001),                          # 10001 exactly
    (1000, Markup(), 1000),                                         # no costs: the settlement price
    (1000, Markup(fixed=250), 1250),
    (1000, Markup(channel_bps=500, fixed=-30), 1020),               # fixed may be a discount
    (333, Markup(payment_bps=3333, platform_bps=3333, channel_bps=3334), 666),  # +100%
    (0, Markup(platform_bps=500, fixed=5), 5),
])
def test_price_over(settlement, markup, expected):
    assert markup.price_over(settlement) == expected
    assert expected == _exact_markup(settlement, markup.payment_bps + markup.platform_bps + markup.channel_bps,
                                     markup.fixed)


def test_price_over_is_exact_for_large_prices():
    """No float ever touches a price: a float would lose the last fen at these magnitudes."""
    for settlement in (99_999_999, 100_000_000, 12_345_678_901, 2**53 + 1):
        for bps in (1, 3, 599, 1_234, 9_999):
            markup = Markup(payment_bps=bps)
            price = markup.price_over(settlement)
            assert isinstance(price, int)
            assert price == _exact_markup(settlement, bps, 0)
            assert price * 10_000 >= settlement * (10_000 + bps) > (price - 1) * 10_000


def test_price_over_matches_exact_ceiling_everywhere():
    for settlement in range(1, 2_000, 7):
        for bps in (0, 1, 60, 99, 101, 650, 3_333, 10_000):
            for fixed in (0, 1, -1, 100):
                markup = Markup(payment_bps=bps // 2, platform_bps=bps - bps // 2, fixed=fixed)
                assert markup.price_over(settlement) == _exact_markup(settlement, bps, fixed)


def test_markup_map_round_trip():
    m = Markup.from_map({"payment_bps": "60", "platform_bps": 500, "fixed": 7})
    assert m == Markup(payment_bps=60, platform_bps=500, channel_bps=0, fixed=7)
    assert m.as_map() == {"payment_bps": 60, "platform_bps": 500, "channel_bps": 0, "fixed": 7}
    assert Markup.from_map(m.as_map()) == m
    assert Markup.from_map({}) == Markup()


@pytest.mark.parametrize("price,per_yuan,points", [
    (0, 100, 0),
    (100, 1, 1),        # 1 yuan at 1 point per yuan
    (1, 1, 1),          # 0.01 point -> 1: the channel never under-collects
    (101, 1, 2),        # 1.01 -> 2
    (199, 1, 2),
    (200, 1, 2),
    (1399, 7, 98),      # 97.93 -> 98
    (1352, 7, 95),      # 94.64 -> 95
    (1156, 10, 116),    # 115.6 -> 116
    (1299, 100, 1299),  # 100 points per yuan: one point per fen
    (12_345, 100_000, 12_345_000),
])
def test_points_for_rounds_up(price, per_yuan, points):
    assert points_for(price, per_yuan) == points
    assert points == math.ceil(Fraction(price * per_yuan, 100))


def test_points_never_under_collect():
    for price in range(0, 3_000, 13):
        for per_yuan in (1, 3, 7, 10, 33, 100, 250):
            points = points_for(price, per_yuan)
            assert points * 100 >= price * per_yuan > (points - 1) * 100 or price == 0


def test_guard_loss():
    guard_loss(1000, 1000, False, "prices.S1")      # at settlement: no loss
    guard_loss(1001, 1000, False, "prices.S1")
    guard_loss(999, 1000, True, "prices.S1")        # below, but ops carry the loss explicitly
    with pytest.raises(Unprocessable) as caught:
        guard_loss(999, 1000, False, "prices.S1")
    error = caught.value
    assert error.status == 422 and error.code == "price_below_settlement" and error.field == "prices.S1"
    assert error.body() == {"error": {"code": "price_below_settlement", "message": error.message,
                                      "field": "prices.S1"}}
    assert "999" in error.message and "1000" in error.message
    with pytest.raises(Unprocessable):
        guard_loss(0, 1, False, "base_prices.A")


def test_sku_price_loss_and_sellable():
    assert SkuPrice(1200, 1000, "explicit", False).loss == 0
    assert SkuPrice(1000, 1000, "explicit", False).sellable
    unaccepted = SkuPrice(900, 1000, "explicit", False)
    assert unaccepted.loss == 100 and not unaccepted.sellable
    accepted = SkuPrice(900, 1000, "explicit", True)
    assert accepted.loss == 100 and accepted.sellable


def test_rule_and_sku_price():
    assert rule_price({"price": 1500}, 1000) == (1500, "explicit")
    assert rule_price({"markup": {"platform_bps": 1000, "fixed": 1}}, 1000) == (1101, "markup")
    assert sku_price(None, 1000, 1800) == SkuPrice(1800, 1000, "base", False)
    assert sku_price({}, 1000, 1800) == SkuPrice(1800, 1000, "base", False)
    assert sku_price({"price": 900, "allow_loss": True}, 1000, 1800) == SkuPrice(900, 1000, "explicit", True)
    assert sku_price({"price": 900}, 1000, 1800).sellable is False
    assert sku_price({"markup": {"payment_bps": 60}}, 1000, 1800) == SkuPrice(1006, 1000, "markup", False)
    # a base price below settlement sells only when ops accepted that loss at approval
    assert sku_price(None, 1000, 950).sellable is False
    assert sku_price(None, 1000, 950, base_allow_loss=True) == SkuPrice(950, 1000, "base", True)
    # a settlement raise over a channel markup is followed, never a stale price
    assert sku_price({"markup": {"platform_bps": 1000}}, 2000, 1800).price == 2200
