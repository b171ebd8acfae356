"""`make run`: the whole system on this machine, no AWS account and no Docker.

Starts Dynoxide (DynamoDB) and moto (S3 with EventBridge delivery), creates the
tables and bucket, serves the app like ``chalice local``, seeds demo data, starts
the reference channel back end (``tools/reference_channel.py``) as both demo
channels' back end with a demo period and points (``tools.seed.demo``), prints
what a person needs to try it and writes it to ``.local/stack.json``. The app's scheduled
sweeps run on their rates in a background thread (``tools.stack.LocalScheduler``), so
webhooks reach the reference back end and remote orders and refunds are swept.
Ctrl-C stops everything it started.
"""
from __future__ import annotations

import json
import os
import signal
import threading

from tools.engines import ROOT, free_port
from tools.stack import LocalSystem


def _port(variable: str = "PORT", default: int = 8000) -> int:
    """The port in ``variable`` (or ``default``) when it is free, else any free port."""
    wanted = int(os.environ.get(variable, str(default)))
    import socket
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            return free_port()


def statement_links(base_url: str, shown) -> dict[str, str]:
    """The ops pages of last month's statements: each demo channel's and each demo supplier's."""
    parties = [f"channel.{c['code']}" for c in shown.seeded.channels] + [
        f"supplier.{s['id']}" for s in shown.seeded.suppliers]
    return {party: f"{base_url}/ops/statements/{shown.settled}.{party}" for party in parties}


def main() -> None:
    # The app from two worker processes, as Lambda serves a burst from many instances (tools/app_server.py).
    system = LocalSystem(port=_port(), door_port=_port("DOOR_PORT", 8001), processes=2).start()
    system.start_scheduler()  # webhooks delivered each minute, remote orders and refunds swept every 5
    system.start_streams()  # paid orders counted from the orders stream, as its consumer Lambda does
    from tools.seed import demo

    shown = demo(system.base_url, system.ops_token, _port("REFERENCE_PORT", 8100))
    reference = shown.reference
    channels = []
    for c in shown.seeded.channels:
        book = reference.books[c["code"]]
        channels.append(dict(
            c, api_base_url=reference.api_base_url(c["code"]), webhook_secret=book.webhook_secret,
            entry_links={m: reference.open_store_link(c["code"], m, "signed") for m in c["members"]},
            app_links={m: f"{reference.url}/app/{c['code']}/{m}" for m in c["members"]}))
    handle = {
        "base_url": system.base_url,
        "function_url": system.door_url,
        "ops_token": system.ops_token,
        "channels": channels,
        "suppliers": [{"id": s["id"], "name": s["name"], "api_key": s["api_key"]} for s in shown.seeded.suppliers],
        "payment_password": shown.password,
        "settled": {"period_id": shown.settled, "statements": statement_links(system.base_url, shown)},
        "reference_channel": {"url": reference.url, "state": f"{reference.url}/state.json"},
        "dynamodb_endpoint": system.dynamodb.endpoint,
        "s3_endpoint": system.moto.endpoint,
    }
    out = ROOT / ".local" / "stack.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(handle, indent=2))
    print(f"""
Channel Mall is running locally.
  base URL      {system.base_url}
  function URL  {system.door_url}   (the second door: channel-facing routes only, as a Lambda function URL)
  ops token     {system.ops_token}   (Authorization: Bearer …, local stack only)
  ops CLI       .venv/bin/python -m tools.ops channels
  DynamoDB      {system.dynamodb.endpoint}   S3 (moto) {system.moto.endpoint}
  reference channel back end  {reference.url}/   (wallets, deductions, webhooks received)
  payment password            {shown.password}   (every demo member, both channels)
  OpenAPI document            {system.base_url}/docs/openapi.json   (what channels integrate against)
  ops sign-in                 {system.base_url}/ops/sign-in   (the ops token once; then every ops link opens)
  ops pages                   {system.base_url}/ops/home   {system.base_url}/ops/reports/operating
                              {system.base_url}/ops/channels/<code>/guide
""")
    for c in channels:
        wallet = ("points granted through the signed partner API" if c["points_mode"] == "hosted"
                  else "points held in the reference back end's wallet")
        print(f"  channel {c['code']} ({c['points_mode']}: {wallet})  secret {c['secret']}")
        print(f"    back end {c['api_base_url']}   webhook secret {c['webhook_secret']}")
        for member, link in c["entry_links"].items():
            print(f"    entry link for {member} (once, within 300 s): {link}")
            print(f"      or any time, as the channel app's tile ({c['entry_mode']} entry): {c['app_links'][member]}")
        print(f"    sign a link yourself: .venv/bin/python -m tools.sign {c['code']} <member_id>")
    for s in handle["suppliers"]:
        print(f"  supplier {s['id']} ({s['name']})  X-Api-Key: {s['api_key']}")
    print(f"\n  Settlement period {shown.settled} (last month's demo history: orders, shipments, a cancel, a refund) "
          f"was settled at start. Statements (sign in once at /ops/sign-in):")
    for party, link in handle["settled"]["statements"].items():
        print(f"    {party:<28} {link}")
    print("  The running month, provisional (never exported): a channel's "
          "`.venv/bin/python -m tools.sign bank-a --call GET /partner/bank-a/statements/current --send`, "
          f"a supplier's `curl -H 'X-Api-Key: …' {system.base_url}/supplier/statements/current`; "
          "`.venv/bin/python -m tools.ops settle` lists the settlement periods that can be settled.")
    print(f"\nThe same, as JSON: {out.relative_to(ROOT)}\nCtrl-C stops everything.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print("stopping…")
    reference.stop()
    system.stop()


if __name__ == "__main__":
    main()
