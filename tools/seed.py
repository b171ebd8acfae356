"""Demo data for the local stack: 2 suppliers, 12 goods in the master pool, 2 channels with sub-pools,
and (``demo``) a reference channel back end wired to both channels so a person can redeem in each.

Catalogue seeding goes through the same business functions the API calls, so demo data obeys every
rule (review, loss guard, audit). Each goods' picture (``tools.demo_images``) is uploaded over HTTP as a
supplier would: a signed upload link, the POST to storage, the upload check, then the goods reference
it. Wiring the channels goes over HTTP, as ops and a channel would:
ops set the back end URL and open a period; the hosted channel grants its members points through
the signed partner API; the remote channel's members hold points in the reference back end's wallet.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

import requests

from chalicelib.channels import channels, pools
from chalicelib.core.schemas import ChannelCreate, GoodsDraft, PoolPricing, SupplierApplication
from chalicelib.core.clock import business_day
from chalicelib.settlement import books, periods
from chalicelib.settlement.models import BookEntry, SettlementPeriod
from chalicelib.supply import goods, suppliers
from tools.demo_images import tile
from tools.reference_channel import ReferenceChannel

ACTOR = "ops:seed"

SUPPLIERS = [
    ("Fresh Valley Foods", "Li Wei", "13800000001", "91310000MA1FL0001X"),
    ("Northwind Home & Tech", "Zhang Min", "13800000002", "91310000MA1FL0002Y"),
]

# (ref, title, category, [(sku_id, spec, settlement_fen, stock)]); the title is the English one, and
# ``CHINESE`` gives each goods its Chinese title and description (both go to the supply API's ``locales``).
GOODS = [
    [("FV-TEA", "West Lake Longjing tea, 250 g", "food", [("250G", "250 g tin", 6800, 200)]),
     ("FV-RICE", "Wuchang fragrant rice, 5 kg", "food", [("5KG", "5 kg bag", 5200, 500)]),
     ("FV-NUTS", "Daily mixed nuts, 30 packs", "food", [("30P", "30 packs", 7900, 300)]),
     ("FV-OIL", "Cold-pressed peanut oil, 1.8 L", "food", [("1L8", "1.8 L", 6100, 150)]),
     ("FV-HONEY", "Mountain acacia honey", "food", [("500G", "500 g", 4500, 120), ("1KG", "1 kg", 8200, 80)]),
     ("FV-FRUIT", "Seasonal fruit box", "food", [("S", "small, 3 kg", 9900, 60), ("L", "large, 6 kg", 17900, 40)])],
    [("NW-KETTLE", "Electric kettle 1.7 L", "home", [("WHITE", "white", 9800, 100), ("BLACK", "black", 9800, 80)]),
     ("NW-TOWEL", "Cotton towel set of 4", "home", [("SET4", "set of 4", 5600, 400)]),
     ("NW-EARBUDS", "Wireless earbuds", "digital", [("STD", "standard", 15900, 90)]),
     ("NW-POWER", "Power bank 10000 mAh", "digital", [("10K", "10000 mAh", 7800, 250)]),
     ("NW-LAMP", "LED desk lamp", "home", [("STD", "standard", 11900, 70)]),
     ("NW-BOTTLE", "Insulated bottle 500 ml", "home", [("RED", "red", 3900, 300), ("BLUE", "blue", 3900, 300)])],
]
CHINESE = {
    "FV-TEA": ("西湖龙井茶 250 克", "杭州西湖产区春茶，手工炒制。"),
    "FV-RICE": ("五常稻花香大米 5 公斤", "黑龙江五常产区，当季新米。"),
    "FV-NUTS": ("每日坚果 30 包", "六种坚果果干，每日一包。"),
    "FV-OIL": ("冷榨花生油 1.8 升", "物理冷榨，保留花生原香。"),
    "FV-HONEY": ("山区洋槐蜂蜜", "深山洋槐花期采集，自然成熟。"),
    "FV-FRUIT": ("时令水果礼盒", "当季鲜果，产地直发。"),
    "NW-KETTLE": ("电热水壶 1.7 升", "304 不锈钢内胆，沸腾自动断电。"),
    "NW-TOWEL": ("纯棉毛巾四件套", "长绒棉，柔软吸水。"),
    "NW-EARBUDS": ("无线蓝牙耳机", "降噪通话，续航 24 小时。"),
    "NW-POWER": ("充电宝 10000 毫安", "双向快充，轻薄便携。"),
    "NW-LAMP": ("LED 护眼台灯", "无频闪，三档色温可调。"),
    "NW-BOTTLE": ("保温杯 500 毫升", "双层真空，保温 12 小时。"),
}

# One tile colour per goods, in catalogue order.
COLOURS = [(46, 125, 50), (121, 85, 72), (239, 108, 0), (249, 168, 37), (255, 143, 0), (198, 40, 40),
           (84, 110, 122), (0, 131, 143), (40, 53, 147), (106, 27, 154), (0, 105, 92), (173, 20, 87)]

CHANNELS = [
    dict(code="bank-a", name="Bank A Rewards", contact_name="Chen Jie", phone="4008800001",
         points_mode="hosted", points_per_yuan=100, member_points_cap=500_000, redemption_quota=10_000_000,
         payment_auth="channel_password", cart_enabled=True,  # its store has a cart; Telecom B's is buy-now only
         default_locale="zh-CN"),  # both stores open in Chinese; a member may switch to English
    # Telecom B's app hands the store a one-time code that we exchange through its member API; signed
    # links work there too.
    dict(code="telecom-b", name="Telecom B Mall", contact_name="Wang Fang", phone="4008800002",
         points_mode="remote", points_per_yuan=50, member_points_cap=1_000_000, redemption_quota=5_000_000,
         payment_auth="channel_password", entry_mode="code", default_locale="zh-CN"),
]
MEMBERS = {"bank-a": ["M1001", "M1002"], "telecom-b": ["T2001", "T2002"]}
NICKNAMES = {"M1001": "Ann", "M1002": "Bo", "T2001": "Chen", "T2002": "Dee"}
# Both demo channels confirm payments with their own password API (payment_auth "channel_password"),
# which the reference back end answers with this password for every demo member.
DEMO_PASSWORD = "135790"
DEMO_POINTS = 200_000  # per member: granted into our wallet (hosted), or held by the channel (remote)
DEMO_PERIOD = "DEMO"
DEMO_PERIOD_SECONDS = 30 * 86_400


@dataclass
class Seeded:
    suppliers: list[dict] = field(default_factory=list)
    channels: list[dict] = field(default_factory=list)
    goods_ids: list[str] = field(default_factory=list)


def upload_image(base_url: str, api_key: str, png: bytes) -> str:
    """An image uploaded the way a supplier does: a signed upload link, then the POST to storage. Its
    upload id; the upload check (S3's event runs the ``upload_created`` Lambda) follows on its own."""
    link = _ok(requests.post(f"{base_url}/supplier/uploads", headers={"X-Api-Key": api_key}, timeout=30,
                             json={"kind": "image", "content_type": "image/png"}), "image upload link")
    stored = requests.post(link["url"], data=link["fields"], timeout=30,
                           files={"file": ("picture.png", png, link["content_type"])})
    if stored.status_code not in (200, 201, 204):
        raise RuntimeError(f"image upload: {stored.status_code} {stored.text}")
    return link["upload_id"]


def wait_checked(base_url: str, api_key: str, upload_id: str) -> None:
    """Until the upload check passed the image (goods may only reference a processed image upload)."""
    deadline = time.monotonic() + 30
    while (status := _ok(requests.get(f"{base_url}/supplier/uploads/{upload_id}", headers={"X-Api-Key": api_key},
                                      timeout=30), "image upload status")["status"]) == "issued":
        if time.monotonic() > deadline:
            raise RuntimeError(f"image upload {upload_id} was not checked within 30 s")
        time.sleep(0.02)
    if status != "processed":
        raise RuntimeError(f"image upload {upload_id} is {status}")


def seed(base_url: str) -> Seeded:
    """The demo catalogue and channels on the app running at ``base_url`` (goods pictures go through it)."""
    out = Seeded()
    for name, contact, phone, licence in SUPPLIERS:
        supplier, key = suppliers.create_by_ops(SupplierApplication(
            name=name, contact_name=contact, phone=phone, licence_no=licence,
            bank_account={"bank": "ICBC Shanghai", "account_name": name, "account_no": "6222020000000000"},
        ), ACTOR)
        out.suppliers.append({"id": supplier.supplier_id, "name": name, "api_key": key.api_key})
    listed = [(supplier, row) for supplier, catalogue in zip(out.suppliers, GOODS) for row in catalogue]
    # Every picture uploaded first, so their checks run while the next ones upload.
    images = [upload_image(base_url, supplier["api_key"], tile(title[0], COLOURS[i % len(COLOURS)]))
              for i, (supplier, (_, title, _, _)) in enumerate(listed)]
    for (supplier, (ref, title, category, skus)), image in zip(listed, images):
        wait_checked(base_url, supplier["api_key"], image)
        english = f"{title} from {supplier['name']}."
        zh_title, zh_description = CHINESE[ref]
        draft = GoodsDraft(ref=ref, title=title, category=category, description=english,
                           locales={"en": {"title": title, "description": english},
                                    "zh-CN": {"title": zh_title, "description": zh_description}},
                           images=[image], skus=[{"sku_id": s, "spec": spec, "settlement_price": p, "stock": n}
                                                 for s, spec, p, n in skus])
        created = goods.publish(supplier["id"], draft, f"supplier:{supplier['id']}")
        # Base sale price: settlement plus 20 %, rounded up to a whole yuan.
        goods.approve(created.goods_id, {s: -(-p * 12 // 1000) * 100 for s, _, p, _ in skus}, False, ACTOR)
        out.goods_ids.append(created.goods_id)
    for spec in CHANNELS:
        channel = channels.create(ChannelCreate(**spec), ACTOR)
        out.channels.append({"code": channel.code, "secret": channel.secret, "webhook_secret": channel.webhook_secret,
                             "points_mode": channel.points_mode,
                             "entry_mode": channel.entry_mode, "members": MEMBERS[channel.code]})
    bank, telecom = (c["code"] for c in out.channels)
    for i, goods_id in enumerate(out.goods_ids):
        skus = goods.skus_of(goods.get(goods_id))
        if i < 10:  # bank-a: markup over settlement on most goods, explicit prices on a few
            rules = ({s: {"price": -(-int(v["settlement_price"]) * 13 // 1000) * 100} for s, v in skus.items()}
                     if i % 3 == 0 else
                     {s: {"markup": {"payment_bps": 60, "platform_bps": 800, "channel_bps": 500}} for s in skus})
            pools.put(bank, goods_id, PoolPricing(prices=rules), ACTOR)
        if i >= 4:  # telecom-b: base prices, except a promoted item sold at a loss ops accepted
            rules = {s: {"price": int(v["settlement_price"]) - 500, "allow_loss": True}
                     for s, v in skus.items()} if i == 8 else {}
            pools.put(telecom, goods_id, PoolPricing(prices=rules), ACTOR)
    return out


@dataclass
class Demo:
    """Everything ``make run`` prints: the seeded data and the reference channel back end serving it."""

    seeded: Seeded
    reference: ReferenceChannel
    password: str = DEMO_PASSWORD
    period_ends_at: int = 0
    settled: str = ""  # the settlement period the demo's history was settled in (``history``)


def _ok(response: requests.Response, what: str) -> dict:
    if response.status_code not in (200, 201, 202):
        raise RuntimeError(f"{what}: {response.status_code} {response.text}")
    return response.json()


def demo(base_url: str, ops_token: str, reference_port: int = 0) -> Demo:
    """Seed, start the reference channel back end, and make both demo channels ready to redeem."""
    seeded = seed(base_url)
    reference = ReferenceChannel(base_url, reference_port).start()
    ops = requests.Session()
    ops.headers["Authorization"] = f"Bearer {ops_token}"
    now = int(time.time())
    ends_at = now + DEMO_PERIOD_SECONDS
    for channel in seeded.channels:
        code, remote = channel["code"], channel["points_mode"] == "remote"
        # Deliveries carry v1a (Ed25519) signatures beside v1: the back end checks both, with the public key.
        keys = _ok(ops.post(f"{base_url}/ops/channels/{code}/webhook-signing-key", timeout=30, json={}),
                   f"give {code} a webhook signing key")
        channel["webhook_public_key"] = keys["public_key"]
        reference.add_channel(code, channel["secret"], channel["points_mode"], channel["entry_mode"],
                              channel["webhook_secret"], [keys["public_key"]])
        for member in channel["members"]:
            reference.add_member(code, member, DEMO_PASSWORD, DEMO_POINTS if remote else 0, NICKNAMES[member])
        _ok(ops.patch(f"{base_url}/ops/channels/{code}", timeout=30, json={
            "api_base_url": reference.api_base_url(code), "webhook_url": f"{reference.api_base_url(code)}/webhooks"}),
            f"set {code}'s back end")
        _ok(ops.post(f"{base_url}/ops/channels/{code}/periods", timeout=30, json={
            "period_id": DEMO_PERIOD, "starts_at": now - 60, "ends_at": ends_at}), f"open {code}'s period")
        if not remote:
            for member in channel["members"]:
                _ok(reference.grant(code, member, f"demo-{member}", DEMO_POINTS, ends_at), f"grant {member}")
    month = history_month(now)
    backdate(history(base_url, seeded, reference), month, now)
    settle(base_url, ops, month.period_id)
    return Demo(seeded, reference, period_ends_at=ends_at, settled=month.period_id)


# --- last month's history, settled at start --------------------------------------------------------------

# Who makes the history (the first member of each channel keeps its whole balance for a person to spend),
# and which goods: (catalogue index, qty, what happens to the parcel), one of each supplier per channel.
HISTORY_MEMBERS = {"bank-a": "M1002", "telecom-b": "T2002"}
HISTORY = {"bank-a": [(0, 2, "shipped"), (6, 1, "refunded"), (3, 1, "cancelled"), (7, 1, "shipped")],
           "telecom-b": [(4, 1, "shipped"), (9, 2, "refunded"), (5, 1, "cancelled"), (10, 1, "shipped")]}
# Where each kind of book entry lands in last month (day of month): bought, shipped, given back.
HISTORY_DAYS = {books.BILLED: 8, books.PAYABLE: 10, books.RETURNED: 15, books.REFUNDED: 15}


def history_month(now: float) -> periods.Period:
    """The month the history goes to: the latest one that may be settled now and has no run yet — last month on
    a fresh ``make run`` (the month before in last month's first hour after it ended). A month already run (the
    schedule starts each month that ended within the last week) has closed statements, which never change."""
    month = periods.containing(business_day(now), periods.MONTHLY)
    while not month.settleable(now) or SettlementPeriod.count(month.period_id):
        month = periods.containing((month.first_day - timedelta(days=1)).isoformat(), periods.MONTHLY)
    return month


def _session(base_url: str, reference: ReferenceChannel, code: str, member: str) -> requests.Session:
    """The member in the store, entered as the channel app's tile does (the session cookie kept)."""
    member_session = requests.Session()
    entered = member_session.get(reference.open_store_link(code, member), allow_redirects=False, timeout=30)
    if entered.status_code != 302:
        raise RuntimeError(f"{member} could not enter {code}: {entered.status_code} {entered.text}")
    return member_session


def _parcel(base_url: str, member: requests.Session, code: str, order_id: str, state: str | None = None) -> dict:
    """The order's one parcel once split (and, with ``state``, once it reached it)."""
    deadline = time.monotonic() + 60
    while True:
        view = _ok(member.get(f"{base_url}/api/{code}/orders/{order_id}", timeout=30), f"order {order_id}")
        found = view.get("parcels") or []
        if found and (state is None or found[0]["state"] == state):
            return found[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"order {order_id}: no parcel {state or 'split'} within 60 s: {view}")
        time.sleep(0.05)


def history(base_url: str, seeded: Seeded, reference: ReferenceChannel) -> list[str]:
    """Orders, shipments, a cancel and a refund per demo channel, made through the API as members and suppliers
    make them; the parties whose books they wrote."""
    keys = {s["id"]: s["api_key"] for s in seeded.suppliers}
    owner = {goods_id: seeded.suppliers[i // 6]["id"] for i, goods_id in enumerate(seeded.goods_ids)}
    parties = set()
    for channel in seeded.channels:
        code = channel["code"]
        member = _session(base_url, reference, code, HISTORY_MEMBERS[code])
        for n, (index, qty, fate) in enumerate(HISTORY[code]):
            goods_id = seeded.goods_ids[index]
            sku_id = sorted(goods.skus_of(goods.get(goods_id)))[0]
            order = _ok(member.post(f"{base_url}/api/{code}/orders", timeout=60,
                                    headers={"Idempotency-Key": f"demo-history-{code}-{n}"},
                                    json={"lines": [{"goods_id": goods_id, "sku_id": sku_id, "qty": qty}],
                                          "password": DEMO_PASSWORD}), f"history order in {code}")
            parcel_id = _parcel(base_url, member, code, order["order_id"])["parcel_id"]
            supplier = {"X-Api-Key": keys[owner[goods_id]]}
            if fate == "cancelled":
                _ok(member.post(f"{base_url}/api/{code}/parcels/{parcel_id}/cancel", timeout=60), "cancel")
                _parcel(base_url, member, code, order["order_id"], "cancelled")
                continue
            _ok(requests.post(f"{base_url}/supplier/parcels/{parcel_id}/ship", headers=supplier, timeout=30,
                              json={"carrier": "SF Express", "tracking_no": f"SF{n}{code[0].upper()}0001"}), "ship")
            parties.add(f"supplier.{owner[goods_id]}")
            if fate == "refunded":
                asked = _ok(member.post(f"{base_url}/api/{code}/parcels/{parcel_id}/refund-requests", timeout=30,
                                        json={"reason": "arrived damaged"}), "refund request")
                _ok(requests.post(f"{base_url}/supplier/refunds/{asked['refund_id']}/approve", headers=supplier,
                                  timeout=60, json={}), "refund approval")
                _parcel(base_url, member, code, order["order_id"], "refunded")
        parties.add(f"channel.{code}")
    return sorted(parties)


def backdate(parties: list[str], month: periods.Period, since: float) -> int:
    """The one backdating, local seeding only (never an API): the book entries ``history`` wrote today are moved
    to days of ``month`` (``HISTORY_DAYS``), as if they had happened then, straight in the local table. Orders and
    parcels keep their real times; settlement reads only the books."""
    moved = 0
    for party in parties:
        for event in books.CHANNEL_EVENTS if party.startswith("channel.") else books.SUPPLIER_EVENTS:
            to_day = f"{month.period_id}-{HISTORY_DAYS[event]:02d}"
            for today, shard in ((d, s) for d in {business_day(since), business_day(time.time())}
                                 for s in range(books.SHARDS)):
                for entry in list(BookEntry.query(books.book(event, party, today, shard),
                                                  BookEntry.entry.between(today, today + "#~"))):
                    BookEntry(books.book(event, party, to_day, shard), f"{to_day}#{entry.parcel_id}",
                              parcel_id=entry.parcel_id, order_id=entry.order_id, lines=entry.lines,
                              points_per_yuan=entry.points_per_yuan, after_shipment=entry.after_shipment,
                              borne_by=entry.borne_by,
                              billed_day=f"{month.period_id}-{HISTORY_DAYS[books.BILLED]:02d}"
                              if entry.billed_day else None).save()
                    entry.delete()
                    moved += 1
    return moved


def settle(base_url: str, ops: requests.Session, period_id: str) -> dict:
    """Start the settlement period's run (the state machine) and wait until it is settled; the run as ops see it."""
    _ok(ops.post(f"{base_url}/ops/settlement/{period_id}", timeout=30, json={}), f"settle {period_id}")
    deadline = time.monotonic() + 180
    while (run := ops.get(f"{base_url}/ops/settlement/{period_id}", timeout=30)).status_code != 200 or \
            run.json()["state"] != "settled":
        if time.monotonic() > deadline:
            raise RuntimeError(f"settlement of {period_id} did not finish within 180 s: {run.text}")
        time.sleep(0.2)
    return run.json()
