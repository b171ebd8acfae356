"""Ops in the AWS console: the dashboard's custom widgets. The widget Lambda (``app.ops_widgets``) is called with
the event CloudWatch sends (``events/ops_widgets.json``: the widget's params at the top level beside
``widgetContext``) for each widget, against real data made here (an order, goods waiting for review, a parked
webhook, partner calls, an audit drift), and its HTML shows that data. The template puts each widget in the ops
dashboard on that Lambda, whose role only reads."""
from __future__ import annotations

import copy
import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from chalice.local import LambdaContext
from pynamodb.connection.base import Connection

from checkout_helpers import PRICE, SETTLEMENT, make_shop, ok, uid
from chalicelib.routes import widgets
from chalicelib.checkout.models import Quota
from chalicelib.partners.models import OutboxEvent
from chalicelib.tables import ALL_MODELS
from chalicelib.partners import webhooks
from chalicelib.settlement import invariants
from infra import template as infra_template
from test_webhooks import Receiver, record, webhook_channel

EVENT = json.loads((Path(__file__).resolve().parent.parent / "events" / "ops_widgets.json").read_text())


def shown(system, widget: str, **context) -> str:
    """What the console shows for ``widget``: the Lambda called with the console's event shape."""
    event = copy.deepcopy(EVENT)
    event["widget"] = event["widgetContext"]["params"]["widget"] = widget
    event["widgetContext"].update(context)
    html = system.app.ops_widgets(event, LambdaContext("ops_widgets", 256))
    assert isinstance(html, str) and "Traceback" not in html
    return html


@pytest.fixture(scope="module")
def shop(system, ops):
    """A hosted channel with one paid order (its password checked at the channel's back end)."""
    made = make_shop(system, ops, "hosted")
    member = made.member()
    ok(made.grant(member, 10 * PRICE), 201)
    assert made.place(requests.Session(), member).status == 201
    system.streams.drain()  # paid orders and their partner calls are counted from the orders stream
    return made


def test_the_daily_report_widget_shows_each_channels_orders_over_the_dashboards_days(system, shop):
    now_ms = int(time.time() * 1000)
    html = shown(system, "daily_report", timeRange={"mode": "relative", "start": now_ms - 2 * 86_400_000,
                                                    "end": now_ms})
    row = next(r for r in html.split("<tr>") if f">{shop.code}<" in r)
    cells = [c.split(">", 1)[1] for c in row.split("</td>")[:-1]]
    assert cells[:6] == [shop.code, "Bank of Tests", "1", str(PRICE), f"{PRICE / 100:,.2f}",
                         f"{(PRICE - SETTLEMENT) / 100:,.2f}"]  # orders, points, GMV and margin in yuan
    first, last = widgets.report_days({"timeRange": {"start": now_ms - 2 * 86_400_000, "end": now_ms}}, 0)
    assert f"{first} to {last}" in html
    # A year asked: the widget stops at 31 days.
    first, last = widgets.report_days({"timeRange": {"start": now_ms - 365 * 86_400_000, "end": now_ms}}, 0)
    assert (datetime.fromisoformat(last) - datetime.fromisoformat(first)).days == widgets.MAX_REPORT_DAYS - 1


def test_the_partner_health_widget_shows_the_calls_to_the_channels_api(system, shop):
    html = shown(system, "partner_health")
    rows = [r for r in html.split("<tr>") if f">{shop.code}<" in r]
    assert rows and all("closed" in r for r in rows), html
    assert any(">1<" in r for r in rows)  # the one password check, in the last hour and day


def test_the_review_widget_lists_goods_waiting_for_review(system, shop):
    title = f"Widget tea {uid()}"
    answer = requests.post(f"{system.base_url}/supplier/goods", headers={"X-Api-Key": shop.supplier_key}, timeout=30,
                           json={"ref": uid("ref-"), "title": title, "category": "food",
                                 "skus": [{"sku_id": "S1", "spec": "1", "settlement_price": 100, "stock": 1}]})
    goods_id = ok(answer, 201)["goods_id"]
    html = shown(system, "review")
    assert title in html and goods_id in html and "waiting for review" in html


def test_the_parked_webhooks_widget_lists_each_parked_event(system, ops):
    with Receiver() as receiver:
        code, secret = webhook_channel(ops, receiver.url)
        receiver.secrets, receiver.down = [secret], True
        [event_id] = record(code, 1)
        gone_by = datetime.fromtimestamp(time.time() - webhooks.RETRY_WINDOW - 60, timezone.utc).isoformat()
        OutboxEvent(event_id).update(actions=[OutboxEvent.created_at.set(gone_by),
                                              OutboxEvent.due_at.set(time.time())])
        assert webhooks.deliver_due(code)["parked"] == 1
    html = shown(system, "parked_webhooks")
    row = next(r for r in html.split("<tr>") if event_id in r)
    assert f">{code}<" in row and "order.paid" in row and "parked event(s)" in html


def test_the_audit_widget_shows_the_latest_drift(system, shop):
    Quota.item(shop.code, shop.period_id).update([Quota.reserved.add(3)])
    try:
        invariants.run([shop.code], pause=0.2)
    finally:
        Quota.item(shop.code, shop.period_id).update([Quota.reserved.add(-3)])
    html = shown(system, "audit_drift")
    assert "drift(s)" in html and f"quota:{shop.code}:{shop.period_id}" in html
    assert "reserved = awaiting orders" in html
    invariants.run([shop.code], pause=0.2)  # clean again: the widget says so
    assert "No drift." in shown(system, "audit_drift")


def test_an_unknown_widget_and_the_describe_call_answer_in_the_widget(system):
    assert "Unknown widget" in shown(system, "<script>") and "<script>" not in shown(system, "<script>")
    assert "daily_report" in system.app.ops_widgets({"describe": True}, LambdaContext("ops_widgets", 256))


def test_the_dashboard_holds_every_widget_on_the_widget_lambda_whose_role_only_reads():
    built = infra_template.build_merge_template("prod")
    body = json.loads(built["Resources"]["OpsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    custom = [w for w in body["widgets"] if w["type"] == "custom"]
    assert [w["properties"]["params"]["widget"] for w in custom] == list(widgets.WIDGETS)
    assert {w["properties"]["endpoint"] for w in custom} == {"${OpsWidgets.Arn}"}
    [policy] = built["Resources"]["OpsWidgetsRole"]["Properties"]["Policies"]
    actions = {a for s in policy["PolicyDocument"]["Statement"] for a in s["Action"]
               if str(a).startswith("dynamodb:")}
    assert actions == {"dynamodb:Scan", "dynamodb:GetItem", "dynamodb:Query"}


def granted(resource) -> tuple[str, str | None]:
    """A role statement's resource as (table logical id, index name or None)."""
    if "Fn::GetAtt" in resource:
        return resource["Fn::GetAtt"][0], None
    table, _, index = resource["Fn::Sub"].removeprefix("${").partition(".Arn}/index/")
    return table, index


def test_every_read_a_widget_makes_is_granted_to_its_role_and_none_writes(system, shop, monkeypatch):
    """Each widget called while every DynamoDB request this thread makes is noted (what IAM would be asked: the
    action and the table or index): each is one the widget Lambda's role grants in the template, so the
    least-privilege role is also enough, and none writes."""
    asked: set[tuple[str, str, str | None]] = set()
    me, send = threading.get_ident(), Connection._make_api_call

    def noted(self, operation: str, kwargs: dict):
        if threading.get_ident() == me:  # not the app's other threads (fulfilment, the HTTP server)
            asked.add((f"dynamodb:{operation}", kwargs.get("TableName", "?"), kwargs.get("IndexName")))
        return send(self, operation, kwargs)

    monkeypatch.setattr(Connection, "_make_api_call", noted)
    for name in widgets.WIDGETS:
        shown(system, name)
    monkeypatch.undo()
    ids = {model.Meta.table_name: infra_template.table_id(model) for model in ALL_MODELS}
    assert {table for _, table, _ in asked} <= set(ids), asked  # every request names one table
    used = {(action, ids[table], index) for action, table, index in asked}
    [policy] = infra_template.build_merge_template("prod")["Resources"]["OpsWidgetsRole"]["Properties"]["Policies"]
    grants = {(action, *granted(resource)) for s in policy["PolicyDocument"]["Statement"]
              for action in s["Action"] if action.startswith("dynamodb:")
              for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])}
    assert used and used <= grants, used - grants
    assert {action for action, _, _ in used} == {"dynamodb:Scan", "dynamodb:GetItem", "dynamodb:Query"}
