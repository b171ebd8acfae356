"""Quick end-to-end of grant + checkout on a hosted channel with the local password stand-in."""
import time
import uuid

from tools.sign import entry_link
from chalicelib.channels.signing import request_headers
import json


def signed_post(anon, code, secret, path, payload):
    body = json.dumps(payload).encode()
    headers = {**request_headers("POST", path, body, secret), "Content-Type": "application/json"}
    return anon.post(path, data=body, headers=headers)


def test_grant_and_buy_with_otp(system, ops, anon, tmp_path):
    code = "c" + uuid.uuid4().hex[:8]
    r = ops.post("/ops/channels", json={"code": code, "name": "T", "contact_name": "C", "phone": "123456",
                                       "points_mode": "hosted", "points_per_yuan": 100, "payment_auth": "otp",
                                       "member_points_cap": 100000, "redemption_quota": 50000})
    secret = r.json()["secret"]
    now = int(time.time())
    r = ops.post(f"/ops/channels/{code}/periods", json={"period_id": "P1", "starts_at": now - 10, "ends_at": now + 3600})
    assert r.status_code == 201, r.text
    # supplier + goods
    r = ops.post("/ops/suppliers", json={"name": "S", "contact_name": "C", "phone": "123456", "licence_no": "LIC123456",
                                        "bank_account": {"bank": "B", "account_name": "S", "account_no": "123456789"}})
    key = r.json()["api_key"]
    r = anon.post("/supplier/goods", headers={"X-Api-Key": key}, json={
        "ref": "R1", "title": "Tea", "category": "food", "skus": [{"sku_id": "A", "spec": "a", "settlement_price": 1000, "stock": 5}]})
    gid = r.json()["goods_id"]
    assert ops.post(f"/ops/goods/{gid}/approve", json={"base_prices": {"A": 1200}}).status_code == 200
    assert ops.put(f"/ops/channels/{code}/pool/{gid}", json={"prices": {}}).status_code == 200
    r = signed_post(anon, code, secret, f"/partner/{code}/grants",
                    {"grant_id": "g1", "member_id": "M1", "points": 5000, "expires_at": now + 600})
    assert r.status_code == 201, r.text
    link = entry_link(system.base_url, code, secret, "M1", mobile="13900000000")
    r = anon.get(link[len(system.base_url):], allow_redirects=False)
    token = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    h = {"Authorization": f"Bearer {token}"}
    assert anon.get(f"/api/{code}/wallet", headers=h).json()["balance"] == 5000
    assert anon.post(f"/api/{code}/otp", headers=h).status_code == 200
    otp = json.loads(open(system.sms_outbox).read().splitlines()[-1])["text"].split("code is ")[1][:6]
    body = {"lines": [{"goods_id": gid, "sku_id": "A", "qty": 2}], "otp": otp}
    r = anon.post(f"/api/{code}/orders", headers={**h, "Idempotency-Key": "key-0001"}, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["points"] == 2400
    r2 = anon.post(f"/api/{code}/orders", headers={**h, "Idempotency-Key": "key-0001"}, json=body)
    assert r2.status_code == 200 and r2.json()["order_id"] == r.json()["order_id"]
    assert anon.get(f"/api/{code}/wallet", headers=h).json()["balance"] == 2600
    q = ops.get(f"/ops/channels/{code}/quota").json()
    assert q["spent"] == 2400 and q["remaining"] == 50000 - 2400
    r3 = anon.post(f"/api/{code}/orders", headers={**h, "Idempotency-Key": "key-0002"}, json=body)
    assert r3.status_code == 401 and r3.json()["error"]["code"] == "otp_expired"
