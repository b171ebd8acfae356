"""Supplier uploads: signed POST links, and objects checked and imported when S3 reports them."""
from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from datetime import datetime, timezone

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from helpers import assert_error, ok, supplier_api, wait_for
from image_helpers import png, upload_image

CSV_MAX = 2 * 1024 * 1024
IMAGE_MAX = 5 * 1024 * 1024
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")

GOODS_CSV = (
    "ref,title,category,sku_id,spec,settlement_price,stock,description,images\n"
    "tea,Tea gift box,food,S,250 g,1000,10,Longjing,{tea_images}\n"                  # line 2
    "tea,Tea gift box,food,L,500 g,1800,4,,\n"                                       # line 3
    "cup,Cup,home,A,white,abc,3,,\n"                                                 # line 4: price not a number
    "pen,,office,A,blue,100,1,,\n"                                                   # line 5: no title
    "mug,Mug,home,A,red,300,1,,\n"                                                   # line 6
    "mug,Mug,home,B,blue,0,1,,\n"                                                    # line 7: price 0 holds back mug
    "bag,Tote bag,home,A,canvas,500,7,,\n"                                           # line 8
    "lamp,Lamp,home,A,desk,900,2,,https://img.example/lamp.jpg\n"                    # line 9: a URL, not an upload
)


@pytest.fixture
def s3():
    return boto3.client("s3")


def _link(sup, kind: str, content_type: str) -> dict:
    body = ok(sup.post("/supplier/uploads", json={"kind": kind, "content_type": content_type}), 201)
    assert body["content_type"] == content_type
    return body


def _post(link: dict, data: bytes, filename: str = "file", content_type: str | None = None) -> requests.Response:
    r = requests.post(link["url"], data=link["fields"],
                      files={"file": (filename, data, content_type or link["content_type"])}, timeout=30)
    assert r.status_code in (200, 201, 204), r.text
    return r


def _settled(sup, upload_id: str) -> dict:
    return wait_for(lambda: ok(sup.get(f"/supplier/uploads/{upload_id}")), lambda u: u["status"] != "issued")


def _policy(link: dict) -> dict:
    fields = {k.lower(): v for k, v in link["fields"].items()}
    return json.loads(base64.b64decode(fields["policy"]))


def _conditions(policy: dict) -> tuple[dict, list]:
    exact, ranges = {}, []
    for c in policy["conditions"]:
        if isinstance(c, dict):
            exact.update({k.lower(): v for k, v in c.items()})
        else:
            ranges.append(c)
    return exact, ranges


def _gone(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")
    return False


def _bucket(system) -> str:
    from chalicelib.core import config
    return config.UPLOAD_BUCKET


@pytest.mark.parametrize("kind,content_type,max_bytes", [
    ("image", "image/png", IMAGE_MAX), ("image", "image/jpeg", IMAGE_MAX), ("image", "image/webp", IMAGE_MAX),
    ("goods_csv", "text/csv", CSV_MAX),
])
def test_link_policy_pins_key_type_size_and_expiry(system, ops, kind, content_type, max_bytes):
    sup, sid = supplier_api(system, ops)
    before = datetime.now(timezone.utc).replace(microsecond=0).timestamp()
    link = _link(sup, kind, content_type)
    assert link["key"] == f"uploads/{sid}/{kind}/{link['upload_id']}"
    assert link["max_bytes"] == max_bytes and link["expires_in"] <= 300
    assert link["fields"]["key"] == link["key"]
    assert link["fields"]["Content-Type"] == content_type
    assert link["url"].rstrip("/").endswith(_bucket(system))

    policy = _policy(link)
    exact, ranges = _conditions(policy)
    assert ["content-length-range", 1, max_bytes] in ranges
    assert exact["content-type"] == content_type
    assert exact["key"] == link["key"]
    assert exact["bucket"] == _bucket(system)
    assert not [r for r in ranges if r[0] == "starts-with"], "no prefix conditions: the key and type are exact"
    expires = datetime.strptime(policy["expiration"].split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S")
    expires_at = expires.replace(tzinfo=timezone.utc).timestamp()
    assert before < expires_at <= time.time() + 300 + 1

    upload = ok(sup.get(f"/supplier/uploads/{link['upload_id']}"))
    assert (upload["status"], upload["kind"], upload["key"], upload["result"]) == ("issued", kind, link["key"], {})


def test_link_refuses_other_types(system, ops):
    sup, _ = supplier_api(system, ops)
    assert_error(sup.post("/supplier/uploads", json={"kind": "goods_csv", "content_type": "application/json"}),
                 422, "unsupported_content_type", "content_type")
    assert_error(sup.post("/supplier/uploads", json={"kind": "image", "content_type": "image/gif"}),
                 422, "unsupported_content_type", "content_type")
    assert_error(sup.post("/supplier/uploads", json={"kind": "image", "content_type": "text/csv"}),
                 422, "unsupported_content_type", "content_type")
    assert_error(sup.post("/supplier/uploads", json={"kind": "video", "content_type": "video/mp4"}),
                 422, "validation_error", "kind")


def test_uploads_are_private_to_their_supplier(system, anon, ops):
    sup, _ = supplier_api(system, ops)
    other, _ = supplier_api(system, ops)
    link = _link(sup, "image", "image/png")
    assert_error(other.get(f"/supplier/uploads/{link['upload_id']}"), 404, "upload_not_found")
    assert_error(sup.get(f"/supplier/uploads/{uuid.uuid4().hex}"), 404, "upload_not_found")
    assert_error(anon.post("/supplier/uploads", json={"kind": "image", "content_type": "image/png"}), 401,
                 "invalid_api_key")


def _by_ref(sup) -> dict[str, dict]:
    goods = ok(sup.get("/supplier/goods"))["goods"]
    counts = Counter(g["ref"] for g in goods)
    assert all(n == 1 for n in counts.values()), counts
    return {g["ref"]: g for g in goods}


def test_goods_csv_import_good_rows_bad_rows_and_repeats(system, ops, s3):
    sup, sid = supplier_api(system, ops)
    images = [upload_image(sup, png(rgb=(10, 20, 30))), upload_image(sup, png(rgb=(30, 20, 10)))]
    csv_text = GOODS_CSV.format(tea_images="|".join(images))
    link = _link(sup, "goods_csv", "text/csv")
    _post(link, csv_text.encode(), "goods.csv")
    upload = _settled(sup, link["upload_id"])
    assert upload["status"] == "processed", upload
    result = upload["result"]
    assert result["rows"] == 8
    assert result["imported"] == 2 and result["existing"] == 0
    assert [e["line"] for e in result["errors"]] == [4, 5, 7, 9]
    reasons = {e["line"]: e["reason"] for e in result["errors"]}
    assert "whole numbers" in reasons[4]
    assert "title" in reasons[5]
    assert "settlement_price" in reasons[7]
    assert reasons[9].startswith("images.0: ") and "URLs are not accepted" in reasons[9]
    assert upload["processed_at"]

    goods = _by_ref(sup)
    assert set(goods) == {"tea", "bag"}
    assert sorted(result["goods_ids"]) == sorted(g["goods_id"] for g in goods.values())
    tea = goods["tea"]
    assert tea["status"] == "pending_review" and tea["supplier_id"] == sid
    assert (tea["title"], tea["category"], tea["description"]) == ("Tea gift box", "food", "Longjing")
    assert tea["images"] == images
    assert tea["skus"] == [{"sku_id": "L", "spec": "500 g", "settlement_price": 1800, "stock": 4},
                           {"sku_id": "S", "spec": "250 g", "settlement_price": 1000, "stock": 10}]
    assert goods["bag"]["skus"] == [{"sku_id": "A", "spec": "canvas", "settlement_price": 500, "stock": 7}]
    pending = {g["goods_id"] for g in ok(ops.get("/ops/goods"))["goods"]}
    assert {tea["goods_id"], goods["bag"]["goods_id"]} <= pending
    audit = ok(sup.get(f"/supplier/goods/{tea['goods_id']}/audit"))["audit"]
    assert {r["actor"] for r in audit} == {f"supplier:{sid}"}

    # the same event delivered again: nothing new
    system.deliver_object_created(_bucket(system), link["key"])
    again = ok(sup.get(f"/supplier/uploads/{link['upload_id']}"))
    assert again["status"] == "processed"
    assert (again["result"]["imported"], again["result"]["existing"]) == (0, 2)
    assert _by_ref(sup).keys() == {"tea", "bag"}

    # the same file through a new link: still each goods once, and an edited goods is not overwritten
    ok(sup.put(f"/supplier/goods/{tea['goods_id']}/skus/S", json={"stock": 3}))
    second = _link(sup, "goods_csv", "text/csv")
    _post(second, csv_text.encode(), "goods.csv")
    repeat = _settled(sup, second["upload_id"])
    assert repeat["status"] == "processed"
    assert (repeat["result"]["imported"], repeat["result"]["existing"]) == (0, 2)
    goods = _by_ref(sup)
    assert goods.keys() == {"tea", "bag"}
    assert {s["sku_id"]: s["stock"] for s in goods["tea"]["skus"]} == {"S": 3, "L": 4}


def test_goods_csv_missing_columns_and_bad_encoding(system, ops):
    sup, _ = supplier_api(system, ops)
    link = _link(sup, "goods_csv", "text/csv")
    _post(link, b"ref,title,price\nx,Thing,100\n", "goods.csv")
    upload = _settled(sup, link["upload_id"])
    assert upload["status"] == "processed"
    assert upload["result"]["imported"] == 0
    [error] = upload["result"]["errors"]
    assert error["line"] == 1 and "category" in error["reason"] and "sku_id" in error["reason"]

    latin = _link(sup, "goods_csv", "text/csv")
    _post(latin, "ref,title,category,sku_id,spec,settlement_price,stock\nx,Th\xe9,food,A,b,1,1\n".encode("latin-1"))
    upload = _settled(sup, latin["upload_id"])
    assert upload["result"]["imported"] == 0
    assert [e["line"] for e in upload["result"]["errors"]] == [0]
    assert ok(sup.get("/supplier/goods"))["goods"] == []


def test_oversized_object_is_refused_and_deleted(system, ops, s3):
    sup, _ = supplier_api(system, ops)
    link = _link(sup, "goods_csv", "text/csv")
    body = b"ref,title,category,sku_id,spec,settlement_price,stock\n" + b"#" * CSV_MAX
    s3.put_object(Bucket=_bucket(system), Key=link["key"], Body=body, ContentType="text/csv")
    upload = _settled(sup, link["upload_id"])
    assert upload["status"] == "refused", upload
    assert str(CSV_MAX) in upload["result"]["refused"] and str(len(body)) in upload["result"]["refused"]
    assert _gone(s3, _bucket(system), link["key"])
    assert ok(sup.get("/supplier/goods"))["goods"] == []


def test_image_that_is_not_a_png_is_refused(system, ops, s3):
    sup, _ = supplier_api(system, ops)
    link = _link(sup, "image", "image/png")
    _post(link, b"<html>not an image</html>", "x.png")
    upload = _settled(sup, link["upload_id"])
    assert upload["status"] == "refused", upload
    assert upload["result"]["refused"] == "object content is not image/png"
    assert _gone(s3, _bucket(system), link["key"])


def test_object_of_another_type_is_refused(system, ops, s3):
    sup, _ = supplier_api(system, ops)
    link = _link(sup, "image", "image/png")
    s3.put_object(Bucket=_bucket(system), Key=link["key"], Body=b"\xff\xd8\xff\xe0" + b"\0" * 64,
                  ContentType="image/jpeg")
    upload = _settled(sup, link["upload_id"])
    assert upload["status"] == "refused", upload
    assert "image/jpeg" in upload["result"]["refused"] and "image/png" in upload["result"]["refused"]
    assert _gone(s3, _bucket(system), link["key"])

    csv_link = _link(sup, "goods_csv", "text/csv")
    s3.put_object(Bucket=_bucket(system), Key=csv_link["key"], Body=GOODS_CSV.encode(), ContentType="text/plain")
    upload = _settled(sup, csv_link["upload_id"])
    assert upload["status"] == "refused"
    assert _gone(s3, _bucket(system), csv_link["key"])
    assert ok(sup.get("/supplier/goods"))["goods"] == []


def test_valid_png_is_processed(system, ops, s3):
    sup, sid = supplier_api(system, ops)
    link = _link(sup, "image", "image/png")
    _post(link, PNG, "pixel.png")
    upload = _settled(sup, link["upload_id"])
    assert upload["status"] == "processed", upload
    # the checked image is copied once to a prefix no upload link can write to and nothing expires
    image_key = f"images/{sid}/{link['upload_id']}"
    assert upload["result"] == {"image_key": image_key, "bytes": len(PNG)}
    for key in (link["key"], image_key):
        stored = s3.get_object(Bucket=_bucket(system), Key=key)
        assert stored["Body"].read() == PNG and stored["ContentType"] == "image/png"

    # a second POST through the same (still valid) link cannot change the image that goods show
    _post(link, PNG + b"trailing bytes", "pixel.png")
    wait_for(lambda: [d for d in system.deliveries if d["key"] == link["key"]], lambda found: len(found) >= 2)
    assert s3.get_object(Bucket=_bucket(system), Key=image_key)["Body"].read() == PNG
    assert ok(sup.get(f"/supplier/uploads/{link['upload_id']}")) == upload


def test_object_without_a_link_is_deleted(system, ops, s3):
    _, sid = supplier_api(system, ops)
    key = f"uploads/{sid}/image/{uuid.uuid4().hex}"
    s3.put_object(Bucket=_bucket(system), Key=key, Body=PNG, ContentType="image/png")
    wait_for(lambda: [d for d in system.deliveries if d["key"] == key], bool)
    assert _gone(s3, _bucket(system), key)
    [delivery] = [d for d in system.deliveries if d["key"] == key]
    assert delivery["result"]["ignored"] == key


def test_refused_upload_redelivered_stays_refused_without_failing(system, ops, s3):
    """EventBridge delivers at least once: a second event for an object already refused and deleted is a no-op."""
    sup, _ = supplier_api(system, ops)
    link = _link(sup, "image", "image/png")
    _post(link, b"GIF89a not a png", "x.png")
    refused = _settled(sup, link["upload_id"])
    assert refused["status"] == "refused"
    system.deliver_object_created(_bucket(system), link["key"])
    last = [d for d in system.deliveries if d["key"] == link["key"]][-1]
    assert "error" not in last["result"], last
    assert ok(sup.get(f"/supplier/uploads/{link['upload_id']}")) == refused
