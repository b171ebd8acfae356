"""The supplier's parcels list, as the workbench filters it: by channel and by shipping deadline (``ship_by``, the
deadline the order's fulfilment run cancels an unshipped parcel at), each parcel naming its channel."""
from __future__ import annotations

from datetime import datetime, timedelta

import requests

from checkout_helpers import make_shop, ok
from chalicelib.orders import parcels
from helpers import assert_error


def test_parcels_name_their_channel_and_deadline_and_filter_by_them(system, ops, monkeypatch):
    # the channel's own terms, whatever an earlier module of this process set for its fulfilment runs
    monkeypatch.delenv("FULFILMENT_SECONDS_OVERRIDE", raising=False)
    shop = make_shop(system, ops, "hosted")
    key = {"X-Api-Key": shop.supplier_key}
    member = shop.member()
    ok(shop.grant(member, 10_000), 201)
    placed = shop.place(requests.Session(), member)
    assert placed.status == 201, placed.body
    (parcel,) = parcels.split(placed.order_id)

    def listed(**query) -> list[dict]:
        return ok(requests.get(f"{system.base_url}/supplier/parcels", params=query, headers=key, timeout=30))["items"]

    [seen] = listed()
    assert seen["parcel_id"] == parcel.parcel_id and seen["channel_code"] == shop.code
    placed_at = datetime.fromisoformat(placed.body["created_at"])
    ship_by = datetime.fromisoformat(seen["ship_by"])
    assert ship_by - placed_at == timedelta(hours=72)  # the channel's default shipping deadline
    assert [p["parcel_id"] for p in listed(channel=shop.code)] == [parcel.parcel_id]
    assert listed(channel="another-channel") == []
    day = ship_by.date()
    assert [p["parcel_id"] for p in listed(ship_by_before=day.isoformat())] == [parcel.parcel_id]
    assert listed(ship_by_before=(day - timedelta(days=1)).isoformat()) == []
    assert [p["parcel_id"] for p in listed(state="awaiting_shipment", channel=shop.code,
                                           ship_by_before=day.isoformat())] == [parcel.parcel_id]
    for bad in ({"channel": "NOT A CODE"}, {"ship_by_before": "tomorrow"}):
        assert_error(requests.get(f"{system.base_url}/supplier/parcels", params=bad, headers=key, timeout=30),
                     422, "validation_error")
