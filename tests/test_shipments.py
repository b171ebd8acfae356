"""Bulk shipment: a CSV through a signed upload link, each row applied or refused with its line and reason;
the same file imported twice ships each parcel once; another supplier's parcels are refused like unknown ones."""
from __future__ import annotations

import pytest
import requests

from checkout_helpers import ok
from helpers import wait_for
from test_parcels import CartShop
from chalicelib.orders import parcels
from chalicelib.orders.models import Parcel


@pytest.fixture(scope="module")
def cart(system, ops) -> CartShop:
    return CartShop(system, ops)


def _upload(sup, text: str) -> dict:
    link = ok(sup.post("/supplier/uploads", json={"kind": "shipments", "content_type": "text/csv"}), 201)
    assert link["key"].split("/")[2] == "shipments"
    r = requests.post(link["url"], data=link["fields"], files={"file": ("ship.csv", text.encode(), "text/csv")},
                      timeout=30)
    assert r.status_code in (200, 201, 204), r.text
    upload = wait_for(lambda: ok(sup.get(f"/supplier/uploads/{link['upload_id']}")),
                      lambda u: u["status"] != "issued", timeout=30)
    assert upload["status"] == "processed", upload
    return upload["result"]


def test_bulk_shipment_rows_applied_or_refused_and_a_second_import_ships_nothing(cart: CartShop) -> None:
    own, theirs = [], []
    for _ in range(3):
        _, order_id = cart.order()
        for parcel in parcels.split(order_id):
            (own if parcel.supplier_id == cart.supplier_b else theirs).append(parcel.parcel_id)
    text = "\n".join([
        "parcel_id,carrier,tracking_no",
        f"{own[0]},SF Express,SF1000001",       # 2: shipped
        f"{own[1]},YTO,YT2000002",              # 3: shipped
        f"{theirs[0]},SF Express,SF1000003",    # 4: another supplier's: as unknown
        "no-such-parcel,SF Express,SF1000004",  # 5: unknown
        f"{own[2]},,SF1000005",                 # 6: no carrier
        f"{own[2]},SF Express,bad tracking!",   # 7: bad tracking number
        f"{own[0]},SF Express,SF1000006",       # 8: the same parcel again
        "../etc/passwd,SF Express,SF1000007",   # 9: not a parcel id
    ]) + "\n"
    result = _upload(cart.sup_b, text)
    assert (result["rows"], result["shipped"], result["parcel_ids"]) == (8, 2, [own[0], own[1]])
    reasons = {e["line"]: e["reason"] for e in result["errors"]}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9]
    assert reasons[4].startswith("parcel_not_found") and reasons[5].startswith("parcel_not_found")
    assert reasons[6].startswith("carrier") and reasons[7].startswith("tracking_no")
    assert reasons[8].startswith("parcel_already_shipped") and reasons[9].startswith("parcel_id")
    first = Parcel.get(own[0], consistent_read=True)
    assert (first.state, first.carrier, first.tracking_no) == ("shipped", "SF Express", "SF1000001")
    assert Parcel.get(theirs[0], consistent_read=True).state == "awaiting_shipment"
    assert Parcel.get(own[2], consistent_read=True).state == "awaiting_shipment"

    again = _upload(cart.sup_b, text)  # the same file, imported a second time
    assert (again["shipped"], again["parcel_ids"]) == (0, [])
    assert {e["line"]: e["reason"].split(":")[0] for e in again["errors"]}[2] == "parcel_already_shipped"
    assert Parcel.get(own[0], consistent_read=True).tracking_no == "SF1000001"
    assert Parcel.get(own[0], consistent_read=True).shipped_at == first.shipped_at


def test_shipments_file_needs_its_columns(cart: CartShop) -> None:
    result = _upload(cart.sup_b, "parcel,carrier\nx,y\n")
    assert result["shipped"] == 0
    assert result["errors"] == [{"line": 1, "reason": "missing columns: parcel_id, tracking_no"}]
