"""The sample events in events/ run through the real non-HTTP entry points."""
import json
from pathlib import Path

from chalice.local import LambdaContext

EVENTS = Path(__file__).resolve().parent.parent / "events"


def test_upload_event_for_an_unknown_key_is_ignored_and_removed(system):
    event = json.loads((EVENTS / "upload_created.json").read_text())
    event["detail"]["bucket"]["name"] = "channelmall-local-uploads"
    result = system.app.upload_created(event, LambdaContext("upload_created", 256))
    assert result["ignored"] == event["detail"]["object"]["key"]
    assert result["reason"] == "no upload link was issued for this key"


def test_scheduled_resolver_reports_per_channel(system, ops):
    import uuid
    code = "ev" + uuid.uuid4().hex[:8]
    assert ops.post("/ops/channels", json={"code": code, "name": "R", "contact_name": "C", "phone": "123456",
                                           "points_mode": "remote", "points_per_yuan": 10, "member_points_cap": 0,
                                           "redemption_quota": 0}).status_code == 201
    event = json.loads((EVENTS / "resolve_remote_orders.json").read_text())
    result = system.app.resolve_remote_orders(event, LambdaContext("resolve_remote_orders", 256))
    # every channel, suspended ones too, and hosted ones (an order keeps the points mode it was placed in)
    every = {c["code"] for c in ops.get("/ops/channels").json()["channels"]}
    assert code in every and set(result) == every
    assert result[code] == {"paid": 0, "failed": 0, "awaiting_deduction": 0}
    assert all(set(v) == {"paid", "failed", "awaiting_deduction"} for v in result.values())
