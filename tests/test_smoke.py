def test_ops_routes_need_the_token(anon, ops):
    r = anon.get("/ops/channels")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "ops_auth_required"
    assert ops.get("/ops/channels").status_code == 200
