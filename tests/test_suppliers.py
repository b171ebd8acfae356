"""Supplier onboarding over HTTP: apply → review → API keys; ops-created accounts; key rotation."""
from __future__ import annotations

from helpers import application, assert_error, ok, race, supplier_api, supplier_client


def _apply(anon, **overrides) -> dict:
    body = ok(anon.post("/suppliers/applications", json=application(**overrides)), 201)
    assert body["status"] == "applied"
    assert body["created_by"] == "self"
    assert "api_key" not in body
    return body


def _ids(ops, status: str) -> set[str]:
    return {s["supplier_id"] for s in ok(ops.get(f"/ops/suppliers?status={status}"))["suppliers"]}


def test_apply_approve_issues_a_key_shown_once(system, anon, ops):
    app = application()
    applied = ok(anon.post("/suppliers/applications", json=app), 201)
    sid = applied["supplier_id"]
    assert applied["status"] == "applied"
    assert applied["name"] == app["name"] and applied["bank_account"] == app["bank_account"]
    assert sid in _ids(ops, "applied")
    assert sid not in _ids(ops, "active")

    approved = ok(ops.post(f"/ops/suppliers/{sid}/approve"))
    assert approved["supplier"]["status"] == "active"
    api_key, key_id = approved["api_key"], approved["key_id"]
    assert api_key.startswith(f"cmk_{key_id}_")
    assert sid in _ids(ops, "active") and sid not in _ids(ops, "applied")

    got = ops.get(f"/ops/suppliers/{sid}")
    detail = ok(got)
    assert detail["supplier"]["status"] == "active"
    assert [k["key_id"] for k in detail["keys"]] == [key_id]
    assert detail["keys"][0]["status"] == "active"
    assert set(detail["keys"][0]) == {"key_id", "status", "created_at", "revoked_at"}
    secret = api_key.split("_", 2)[2]
    assert secret not in got.text and api_key not in got.text

    me = ok(supplier_client(system, api_key).get("/supplier/me"))
    assert me["supplier_id"] == sid and me["status"] == "active"
    # the key is also accepted as a Bearer token
    bearer = ok(anon.get("/supplier/me", headers={"Authorization": f"Bearer {api_key}"}))
    assert bearer["supplier_id"] == sid


def test_approving_twice_is_a_conflict_and_issues_no_second_key(anon, ops):
    sid = _apply(anon)["supplier_id"]
    ok(ops.post(f"/ops/suppliers/{sid}/approve"))
    assert_error(ops.post(f"/ops/suppliers/{sid}/approve"), 409, "supplier_not_pending")
    assert_error(ops.post(f"/ops/suppliers/{sid}/reject", json={"reason": "late"}), 409, "supplier_not_pending")
    detail = ok(ops.get(f"/ops/suppliers/{sid}"))
    assert len(detail["keys"]) == 1
    assert detail["supplier"]["status"] == "active" and detail["supplier"]["reject_reason"] is None


def test_reject_with_reason(anon, ops):
    sid = _apply(anon)["supplier_id"]
    rejected = ok(ops.post(f"/ops/suppliers/{sid}/reject", json={"reason": "licence expired"}))
    assert rejected["supplier"]["status"] == "rejected"
    detail = ok(ops.get(f"/ops/suppliers/{sid}"))
    assert detail["supplier"]["reject_reason"] == "licence expired"
    assert detail["keys"] == []
    assert sid in _ids(ops, "rejected") and sid not in _ids(ops, "applied")
    assert_error(ops.post(f"/ops/suppliers/{sid}/approve"), 409, "supplier_not_pending")
    assert ok(ops.get(f"/ops/suppliers/{sid}"))["keys"] == []


def test_reject_needs_a_reason(anon, ops):
    sid = _apply(anon)["supplier_id"]
    assert_error(ops.post(f"/ops/suppliers/{sid}/reject", json={}), 422, "validation_error", "reason")
    assert_error(ops.post(f"/ops/suppliers/{sid}/reject", json={"reason": ""}), 422, "validation_error", "reason")
    assert ok(ops.get(f"/ops/suppliers/{sid}"))["supplier"]["status"] == "applied"


def test_applied_supplier_has_no_key(anon, ops):
    sid = _apply(anon)["supplier_id"]
    assert ok(ops.get(f"/ops/suppliers/{sid}"))["keys"] == []
    assert_error(ops.post(f"/ops/suppliers/{sid}/keys", json={}), 409, "supplier_not_active")
    assert ok(ops.get(f"/ops/suppliers/{sid}"))["keys"] == []


def test_ops_create_gives_an_active_supplier_with_a_key(system, ops):
    app = application()
    body = ok(ops.post("/ops/suppliers", json=app), 201)
    supplier = body["supplier"]
    assert supplier["status"] == "active" and supplier["created_by"] == "ops:local"
    assert supplier["licence_no"] == app["licence_no"]
    me = ok(supplier_client(system, body["api_key"]).get("/supplier/me"))
    assert me["supplier_id"] == supplier["supplier_id"]
    keys = ok(ops.get(f"/ops/suppliers/{supplier['supplier_id']}"))["keys"]
    assert [k["key_id"] for k in keys] == [body["key_id"]]


def test_ops_supplier_routes_need_ops(anon, system, ops):
    sup, sid = supplier_api(system, ops)
    assert_error(anon.get("/ops/suppliers"), 401, "ops_auth_required")
    assert_error(anon.post(f"/ops/suppliers/{sid}/keys", json={}), 401, "ops_auth_required")
    assert_error(sup.get(f"/ops/suppliers/{sid}"), 401, "ops_auth_required")
    assert_error(anon.post("/ops/suppliers", json=application()), 401, "ops_auth_required")


def test_key_rotation_keeps_old_key_unless_revoked(system, ops):
    body = ok(ops.post("/ops/suppliers", json=application()), 201)
    sid, first = body["supplier"]["supplier_id"], body["api_key"]

    second = ok(ops.post(f"/ops/suppliers/{sid}/keys", json={}), 201)
    assert second["api_key"] != first
    for key in (first, second["api_key"]):
        assert ok(supplier_client(system, key).get("/supplier/me"))["supplier_id"] == sid

    third = ok(ops.post(f"/ops/suppliers/{sid}/keys", json={"revoke_existing": True}), 201)
    assert ok(supplier_client(system, third["api_key"]).get("/supplier/me"))["supplier_id"] == sid
    for key in (first, second["api_key"]):
        assert_error(supplier_client(system, key).get("/supplier/me"), 401, "invalid_api_key")

    keys = {k["key_id"]: k for k in ok(ops.get(f"/ops/suppliers/{sid}"))["keys"]}
    assert keys[third["key_id"]]["status"] == "active" and keys[third["key_id"]]["revoked_at"] is None
    assert keys[body["key_id"]]["status"] == "revoked" and keys[body["key_id"]]["revoked_at"]
    assert keys[second["key_id"]]["status"] == "revoked"


def test_revoke_one_key(system, ops):
    body = ok(ops.post("/ops/suppliers", json=application()), 201)
    sid = body["supplier"]["supplier_id"]
    spare = ok(ops.post(f"/ops/suppliers/{sid}/keys", json={}), 201)
    assert ok(ops.delete(f"/ops/suppliers/{sid}/keys/{body['key_id']}")) == {"key_id": body["key_id"],
                                                                             "status": "revoked"}
    assert_error(supplier_client(system, body["api_key"]).get("/supplier/me"), 401, "invalid_api_key")
    assert ok(supplier_client(system, spare["api_key"]).get("/supplier/me"))["supplier_id"] == sid
    # idempotent, and another supplier's key cannot be revoked through this supplier
    ok(ops.delete(f"/ops/suppliers/{sid}/keys/{body['key_id']}"))
    _, other = supplier_api(system, ops)
    assert_error(ops.delete(f"/ops/suppliers/{other}/keys/{spare['key_id']}"), 404, "key_not_found")
    assert ok(supplier_client(system, spare["api_key"]).get("/supplier/me"))["supplier_id"] == sid


def test_bad_or_missing_keys_are_refused(system, anon, ops):
    body = ok(ops.post("/ops/suppliers", json=application()), 201)
    key_id = body["key_id"]
    assert_error(anon.get("/supplier/me"), 401, "invalid_api_key")
    for bad in ("nonsense", "cmk_only", f"cmk_{key_id}_wrongsecret", f"xyz_{key_id}_{body['api_key'].split('_', 2)[2]}",
                "cmk_0000000000000000_secret"):
        assert_error(supplier_client(system, bad).get("/supplier/me"), 401, "invalid_api_key")


def test_validation_errors_name_the_field(anon, ops):
    app = application()
    del app["phone"]
    assert_error(anon.post("/suppliers/applications", json=app), 422, "validation_error", "phone")
    assert_error(anon.post("/suppliers/applications", json=application(phone="call me")), 422,
                 "validation_error", "phone")
    assert_error(anon.post("/suppliers/applications", json=application(email="nope")), 422,
                 "validation_error", "email")
    bank = application()["bank_account"] | {"account_no": "x"}
    assert_error(anon.post("/suppliers/applications", json=application(bank_account=bank)), 422,
                 "validation_error", "bank_account.account_no")
    assert_error(anon.post("/suppliers/applications", json=application(status="active")), 422,
                 "validation_error", "status")
    assert_error(ops.post("/ops/suppliers", json=application(name="")), 422, "validation_error", "name")
    assert_error(anon.post("/suppliers/applications", json=[application()]), 422, "validation_error", "body")


def test_invalid_json_is_a_400(anon, ops):
    r = anon.post("/suppliers/applications", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")
    r = ops.post("/ops/suppliers", data=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")


def test_unknown_supplier(ops):
    assert_error(ops.get("/ops/suppliers/SNOPE"), 404, "supplier_not_found")
    assert_error(ops.post("/ops/suppliers/SNOPE/approve"), 404, "supplier_not_found")
    assert_error(ops.post("/ops/suppliers/SNOPE/keys", json={}), 404, "supplier_not_found")


def test_concurrent_approvals_issue_one_key(anon, ops):
    sid = _apply(anon)["supplier_id"]
    results = race(6, lambda i: ops.post(f"/ops/suppliers/{sid}/approve"))
    won = [r for r in results if r.status_code == 200]
    assert len(won) == 1, [r.text for r in results]
    for r in results:
        if r.status_code != 200:
            assert_error(r, 409, "supplier_not_pending")
    keys = ok(ops.get(f"/ops/suppliers/{sid}"))["keys"]
    assert [k["key_id"] for k in keys] == [won[0].json()["key_id"]]
