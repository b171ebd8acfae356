"""Demo data for the local stack: 2 suppliers, 12 goods in the master pool, 2 channels with sub-pools.

Seeding goes through the same business functions the API calls, so demo
data obeys every rule (review, loss guard, audit).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from chalicelib import channels, goods, pools, suppliers
from chalicelib.schemas import ChannelCreate, GoodsDraft, PoolPricing, SupplierApplication

ACTOR = "ops:seed"

SUPPLIERS = [
    ("Fresh Valley Foods", "Li Wei", "13800000001", "91310000MA1FL0001X"),
    ("Northwind Home & Tech", "Zhang Min", "13800000002", "91310000MA1FL0002Y"),
]

# (ref, title, category, [(sku_id, spec, settlement_fen, stock)])
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

CHANNELS = [
    dict(code="bank-a", name="Bank A Rewards", contact_name="Chen Jie", phone="4008800001",
         points_mode="hosted", points_per_yuan=100, member_points_cap=500_000, redemption_quota=10_000_000),
    dict(code="telecom-b", name="Telecom B Mall", contact_name="Wang Fang", phone="4008800002",
         points_mode="remote", points_per_yuan=50, member_points_cap=1_000_000, redemption_quota=5_000_000),
]
MEMBERS = {"bank-a": ["M1001", "M1002"], "telecom-b": ["T2001", "T2002"]}


@dataclass
class Seeded:
    suppliers: list[dict] = field(default_factory=list)
    channels: list[dict] = field(default_factory=list)
    goods_ids: list[str] = field(default_factory=list)


def seed() -> Seeded:
    out = Seeded()
    for (name, contact, phone, licence), catalogue in zip(SUPPLIERS, GOODS):
        supplier, key = suppliers.create_by_ops(SupplierApplication(
            name=name, contact_name=contact, phone=phone, licence_no=licence,
            bank_account={"bank": "ICBC Shanghai", "account_name": name, "account_no": "6222020000000000"},
        ), ACTOR)
        out.suppliers.append({"id": supplier.supplier_id, "name": name, "api_key": key.api_key})
        for ref, title, category, skus in catalogue:
            draft = GoodsDraft(ref=ref, title=title, category=category, description=f"{title} from {name}.",
                               skus=[{"sku_id": s, "spec": spec, "settlement_price": p, "stock": n}
                                     for s, spec, p, n in skus])
            created = goods.publish(supplier.supplier_id, draft, f"supplier:{supplier.supplier_id}")
            # Base sale price: settlement plus 20 %, rounded up to a whole yuan.
            goods.approve(created.goods_id, {s: -(-p * 12 // 1000) * 100 for s, _, p, _ in skus}, False, ACTOR)
            out.goods_ids.append(created.goods_id)
    for spec in CHANNELS:
        channel = channels.create(ChannelCreate(**spec), ACTOR)
        out.channels.append({"code": channel.code, "secret": channel.secret, "points_mode": channel.points_mode,
                             "members": MEMBERS[channel.code]})
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
