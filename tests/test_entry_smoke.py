"""Quick end-to-end: seed-like channel, signed entry, catalog through the session."""
import uuid

from tools.sign import entry_link


def test_entry_then_catalog(system, ops, anon):
    code = "t" + uuid.uuid4().hex[:8]
    r = ops.post("/ops/channels", json={"code": code, "name": "T", "contact_name": "C", "phone": "123456",
                                       "points_mode": "hosted", "points_per_yuan": 100,
                                       "member_points_cap": 1000, "redemption_quota": 100000})
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    link = entry_link(system.base_url, code, secret, "M-1", nickname="Ann", target="/goods/X")
    r = anon.get(link[len(system.base_url):], allow_redirects=False)
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == f"{system.base_url}/store/{code}#/goods/X"
    token = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    me = anon.get(f"/api/{code}/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["nickname"] == "Ann"
    replay = anon.get(link[len(system.base_url):], allow_redirects=False)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "nonce_replayed"
    cat = anon.get(f"/api/{code}/catalog", headers={"Authorization": f"Bearer {token}"})
    assert cat.status_code == 200 and cat.json()["items"] == []
