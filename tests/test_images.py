"""Approved goods images reach the catalog and the H5 store as short-lived presigned GET links.

Uploaded through the signed POST a supplier gets (against moto S3), checked, attached, approved: the
catalog (list, topics, detail) links exactly those bytes with the documented expiry and Cache-Control;
a pending revision's image is never linked.
"""
from __future__ import annotations

import re
import time
import uuid
from urllib.parse import parse_qs, urlparse

import requests

from chalicelib.core import config
from helpers import approve, channel, ok, publish, sku, supplier_api
from image_helpers import png, upload_image
from test_catalog import member, put_pool
from test_store_browser import browser, phone, shot  # noqa: F401  (browser is a fixture)
from tools.sign import entry_link

APPROVED_PNG = png(96, 96, (30, 110, 200))
REVISED_PNG = png(96, 96, (220, 120, 20))


def _download(url: str) -> requests.Response:
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    return r


def _assert_link(url: str, data: bytes) -> None:
    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-Expires"] == [str(config.IMAGE_LINK_SECONDS)] and config.IMAGE_LINK_SECONDS <= 3600
    r = _download(url)
    assert r.content == data
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Cache-Control"] == config.IMAGE_CACHE_CONTROL == "private, max-age=900, immutable"


def _shop(system, ops):
    sup, sid = supplier_api(system, ops)
    image = upload_image(sup, APPROVED_PNG)
    goods = approve(ops, publish(sup, skus=[sku("S1", 1000, 10)], title="Blue Teapot", images=[image]))
    plain = approve(ops, publish(sup, skus=[sku("S1", 1000, 10)], title="Plain mug"))
    view, secret = channel(ops)
    code = view["code"]
    for g in (goods, plain):
        put_pool(ops, code, g["goods_id"])
    ok(ops.put(f"/ops/channels/{code}/topics/t1", json={"title": "Picks", "position": 1,
                                                        "goods_ids": [goods["goods_id"], plain["goods_id"]]}))
    return sup, sid, image, goods, plain, code, secret


def test_catalog_links_exactly_the_approved_image_bytes_and_never_a_pending_one(system, ops):
    sup, sid, image, goods, plain, code, secret = _shop(system, ops)
    gid = goods["goods_id"]
    shopper = member(system, code, secret)

    cards = {c["goods_id"]: c for c in ok(shopper.get(f"/api/{code}/catalog"))["items"]}
    _assert_link(cards[gid]["image"], APPROVED_PNG)
    assert cards[plain["goods_id"]]["image"] is None
    [topic] = ok(shopper.get(f"/api/{code}/topics"))["topics"]
    _assert_link(topic["items"][0]["image"], APPROVED_PNG)
    detail = ok(shopper.get(f"/api/{code}/goods/{gid}"))
    assert len(detail["images"]) == 1
    _assert_link(detail["images"][0], APPROVED_PNG)
    assert ok(shopper.get(f"/api/{code}/goods/{plain['goods_id']}"))["images"] == []
    # one link per image per reuse window: the browser's cache serves it again on the next page
    window = int(time.time()) // config.IMAGE_LINK_REUSE_SECONDS
    again = ok(shopper.get(f"/api/{code}/goods/{gid}"))["images"][0]
    if int(time.time()) // config.IMAGE_LINK_REUSE_SECONDS == window:
        assert again == detail["images"][0]
    # the link is to the checked copy, not to the upload a signed POST could still write to
    assert urlparse(detail["images"][0]).path.endswith(f"/images/{sid}/{image}")

    # a revision with a new image: members keep the approved one, the new one is linked nowhere
    revised = upload_image(sup, REVISED_PNG)
    ok(sup.patch(f"/supplier/goods/{gid}", json={"images": [revised, image]}))
    pages = [shopper.get(f"/api/{code}/catalog").text, shopper.get(f"/api/{code}/topics").text,
             shopper.get(f"/api/{code}/goods/{gid}").text]
    assert all(revised not in text for text in pages)
    detail = ok(shopper.get(f"/api/{code}/goods/{gid}"))
    assert [_download(u).content for u in detail["images"]] == [APPROVED_PNG]

    ok(ops.post(f"/ops/goods/{gid}/revision/approve"))
    detail = ok(shopper.get(f"/api/{code}/goods/{gid}"))
    assert [_download(u).content for u in detail["images"]] == [REVISED_PNG, APPROVED_PNG]
    card = next(c for c in ok(shopper.get(f"/api/{code}/catalog"))["items"] if c["goods_id"] == gid)
    _assert_link(card["image"], REVISED_PNG)


def test_store_shows_the_approved_image_and_a_letter_without_one(system, ops, browser):  # noqa: F811
    _, _, _, goods, plain, code, secret = _shop(system, ops)
    context = phone(browser)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(entry_link(system.base_url, code, secret, f"M-{uuid.uuid4().hex[:8]}"))
    assert re.search(rf"/store/{code}(#.*)?$", page.url), page.url
    topic = page.get_by_test_id("topic").first
    topic.wait_for()
    card = topic.locator(f"[data-testid=goods-card][data-goods-id='{goods['goods_id']}']")
    image = card.get_by_test_id("goods-image")
    image.scroll_into_view_if_needed()
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("el => [el.naturalWidth, el.naturalHeight]") == [96, 96]
    # goods without an image keep the letter placeholder
    mug = topic.locator(f"[data-testid=goods-card][data-goods-id='{plain['goods_id']}']")
    assert mug.get_by_test_id("goods-image").count() == 0 and mug.locator(".ph").inner_text() == "P"
    shot(page, "home-with-image", prefix="images")

    card.click()
    gallery = page.get_by_test_id("gallery")
    gallery.get_by_test_id("goods-image").first.wait_for()
    page.wait_for_function("el => el.complete && el.naturalWidth > 0",
                           arg=gallery.get_by_test_id("goods-image").first.element_handle())
    shot(page, "detail-with-image", prefix="images")
    assert errors == []
    context.close()
