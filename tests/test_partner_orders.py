"""A channel's server reads our orders (signed per contract v2): one order by our id, a member's orders by the
channel's member id, paged; never another channel's."""
from __future__ import annotations

import pytest
import requests

from checkout_helpers import assert_error, make_shop, ok
from helpers import wait_for
from tools.sign import signed_request


@pytest.fixture(scope="module")
def shops(system, ops):
    """Two hosted channels; the first has a member with three paid orders."""
    mine, other = make_shop(system, ops, "hosted"), make_shop(system, ops, "hosted")
    member = mine.member()
    ok(mine.grant(member, 10 * mine.price_points), 201)
    session = requests.Session()
    orders = [mine.place(session, member) for _ in range(3)]
    assert [a.status for a in orders] == [201] * 3, orders
    return mine, other, member, [a.order_id for a in orders]


def signed_get(shop, path: str, secret: str | None = None) -> requests.Response:
    url, headers = signed_request(shop.base_url, secret or shop.secret, "GET", path)
    return requests.get(url, headers=headers, timeout=30)


def test_a_channel_reads_one_of_its_orders(shops):
    mine, _, member, order_ids = shops
    order = ok(signed_get(mine, f"/partner/{mine.code}/orders/{order_ids[0]}"))
    assert order["order_id"] == order_ids[0] and order["channel_code"] == mine.code
    assert order["member_id"] == member  # the channel's own member id, not ours
    assert order["status"] == "paid" and order["points"] == mine.price_points
    assert [(line["goods_id"], line["qty"]) for line in order["lines"]] == [(mine.goods_id, 1)]
    assert all("settlement_price" not in line and "supplier_id" not in line for line in order["lines"])
    # the workflow splits it into one parcel (one supplier), shown as the member's order centre shows it
    split = wait_for(lambda: ok(signed_get(mine, f"/partner/{mine.code}/orders/{order_ids[0]}")),
                     lambda o: len(o["parcels"]) == 1, timeout=30)
    assert split["parcels"][0]["state"] == "awaiting_shipment" and "supplier_id" not in split["parcels"][0]


def test_another_channels_order_is_not_found(shops):
    mine, other, _, order_ids = shops
    assert_error(signed_get(other, f"/partner/{other.code}/orders/{order_ids[0]}"), 404, "order_not_found")
    assert_error(signed_get(mine, f"/partner/{mine.code}/orders/no-such-order"), 404, "order_not_found")


def test_reads_are_signed(shops):
    mine, other, _, order_ids = shops
    path = f"/partner/{mine.code}/orders/{order_ids[0]}"
    assert_error(requests.get(mine.base_url + path, timeout=30), 400, "missing_field")
    assert signed_get(mine, path, secret=other.secret).status_code == 401  # another channel's key


def test_a_members_orders_are_paged_newest_first(shops):
    mine, _, member, order_ids = shops
    first = ok(signed_get(mine, f"/partner/{mine.code}/members/{member}/orders?limit=2"))
    assert [o["order_id"] for o in first["orders"]] == order_ids[::-1][:2] and first["next_cursor"]
    rest = ok(signed_get(mine, f"/partner/{mine.code}/members/{member}/orders?limit=2&cursor={first['next_cursor']}"))
    assert [o["order_id"] for o in rest["orders"]] == order_ids[:1]
    whole = ok(signed_get(mine, f"/partner/{mine.code}/members/{member}/orders"))
    assert [o["order_id"] for o in whole["orders"]] == order_ids[::-1] and whole["next_cursor"] is None
    assert all(o["member_id"] == member and isinstance(o["parcels"], list) for o in whole["orders"])


def test_member_reads_refuse_unknown_members_bad_cursors_and_limits(shops):
    mine, other, member, _ = shops
    assert_error(signed_get(other, f"/partner/{other.code}/members/{member}/orders"), 404, "member_not_found")
    assert_error(signed_get(mine, f"/partner/{mine.code}/members/{member}/orders?cursor=bm9wZQ"), 400,
                 "invalid_cursor")
    for limit in ("0", "51", "x"):
        assert_error(signed_get(mine, f"/partner/{mine.code}/members/{member}/orders?limit={limit}"), 422,
                     "validation_error")
