"""`make run`: the whole system on this machine, no AWS account and no Docker.

Starts Dynoxide (DynamoDB) and moto (S3 with EventBridge delivery), creates the
tables and bucket, seeds demo data, serves the app like ``chalice local``,
prints what a person needs to try it and writes it to ``.local/stack.json``.
Ctrl-C stops everything it started.
"""
from __future__ import annotations

import json
import os
import signal
import threading

from tools.engines import ROOT, free_port
from tools.stack import LocalSystem


def _port() -> int:
    wanted = int(os.environ.get("PORT", "8000"))
    import socket
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            return free_port()


def main() -> None:
    system = LocalSystem(port=_port()).start()
    from tools.seed import seed
    from tools.sign import entry_link

    seeded = seed()
    handle = {
        "base_url": system.base_url,
        "ops_token": system.ops_token,
        "channels": [dict(c, entry_links={m: entry_link(system.base_url, c["code"], c["secret"], m)
                                          for m in c["members"]}) for c in seeded.channels],
        "suppliers": [{"id": s["id"], "name": s["name"], "api_key": s["api_key"]} for s in seeded.suppliers],
        "dynamodb_endpoint": system.dynamodb.endpoint,
        "s3_endpoint": system.moto.endpoint,
    }
    out = ROOT / ".local" / "stack.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(handle, indent=2))
    print(f"""
Channel Mall is running locally.
  base URL      {system.base_url}
  ops token     {system.ops_token}   (Authorization: Bearer …, local stack only)
  ops CLI       .venv/bin/python -m tools.ops channels
  DynamoDB      {system.dynamodb.endpoint}   S3 (moto) {system.moto.endpoint}
""")
    for c in handle["channels"]:
        print(f"  channel {c['code']} ({c['points_mode']})  secret {c['secret']}")
        for member, link in c["entry_links"].items():
            print(f"    entry link for {member}: {link}")
        print(f"    fresh link: .venv/bin/python -m tools.sign {c['code']} <member_id>")
    for s in handle["suppliers"]:
        print(f"  supplier {s['id']} ({s['name']})  X-Api-Key: {s['api_key']}")
    print(f"\nThe same, as JSON: {out.relative_to(ROOT)}\nCtrl-C stops everything.")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print("stopping…")
    system.stop()


if __name__ == "__main__":
    main()
