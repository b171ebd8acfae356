"""`make run`: the whole system on this machine, no AWS account and no Docker.

Starts Dynoxide (DynamoDB) and moto (S3 with EventBridge delivery), creates the
tables and bucket, serves the app like ``chalice local``, seeds demo data, starts
the reference channel back end (``tools/reference_channel.py``) as both demo
channels' back end with a demo period and points (``tools.seed.demo``), writes what a
person needs to try it to ``.local/stack.json`` and prints the short part of it last; every log line
goes to ``.local/run.log`` (the app workers' own to ``.local/app-<port>.log``). The app's scheduled
sweeps run on their rates in a background thread (``tools.stack.LocalScheduler``), so
webhooks reach the reference back end and remote orders and refunds are swept.
Ctrl-C stops everything it started.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import requests

from tools.engines import ROOT, free_port
from tools.stack import LocalSystem

if TYPE_CHECKING:
    from tools.reference_channel import ReferenceChannel


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


def _workbench_link(base_url: str, api_key: str) -> str:
    """A sign-in link to the supplier workbench, made as the supplier's key holder makes one."""
    response = requests.post(f"{base_url}/supplier/signin-links", headers={"X-Api-Key": api_key}, timeout=30)
    response.raise_for_status()
    return response.json()["url"]


LOG = ROOT / ".local" / "run.log"


def console_to_log(path: Path) -> TextIO:
    """From now on everything written to stdout and stderr (the app's JSON logs, warnings, tracebacks, and
    the processes started later, which inherit them) goes to ``path``; returns a stream to the real console,
    for the short summary a person reads."""
    path.parent.mkdir(exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.fdopen(os.dup(1), "w", buffering=1)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return console


def summary(handle: dict, log: str, handle_file: str) -> list[str]:
    """What ``make run`` prints last: the few links and credentials a person starts from, one block per use
    (store, ops, channel integration, suppliers); everything else is in ``handle_file``."""
    base = handle["base_url"]
    lines = [f"Channel Mall is running locally at {base}",
             f"  logs {log}   everything below and more (secrets, entry links, endpoints): {handle_file}",
             "",
             f"  Store, as each channel app's tile opens it (payment password {handle['payment_password']}):"]
    for c in handle["channels"]:
        for i, (member, link) in enumerate(c["app_links"].items()):
            label = f"{c['code']} ({c['points_mode']} points)" if i == 0 else ""
            lines.append(f"    {label:<26}{member}  {link}")
    lines += ["",
              f"  Ops       sign in {base}/ops/sign-in with the token {handle['ops_token']} (local stack only),",
              f"            then {base}/ops/home   report {base}/ops/reports/operating",
              "            CLI .venv/bin/python -m tools.ops --help   (settle: the settlement periods that can run)",
              f"  Channels  API {base}/docs/openapi.json   guide {base}/ops/channels/<code>/guide",
              f"            reference back end {handle['reference_channel']['url']}/",
              "  Suppliers"]
    for s in handle["suppliers"]:
        lines += [f"    {s['id']}  {s['name']}  X-Api-Key {s['api_key']}",
                  f"      workbench (sign-in link, once, within 15 min): {s['workbench_link']}"]
    settled = handle["settled"]
    lines += ["", f"  Last month ({settled['period_id']}) settled at start: statements (ops, after signing in)"]
    lines += [f"    {party:<30}{link}" for party, link in settled["statements"].items()]
    lines += ["    the running month, provisional: GET /partner/<code>/statements/current (signed), "
              "GET /supplier/statements/current"]
    return lines
def statement_links(base_url: str, shown) -> dict[str, str]:
    """The ops pages of last month's statements: each demo channel's and each demo supplier's."""
    parties = [f"channel.{c['code']}" for c in shown.seeded.channels] + [
        f"supplier.{s['id']}" for s in shown.seeded.suppliers]
    return {party: f"{base_url}/ops/statements/{shown.settled}.{party}" for party in parties}


def main() -> None:
    console = console_to_log(LOG)
    try:
        system, reference, handle = start()
    except BaseException as error:  # noqa: BLE001 - said on the console, the traceback is in the log
        traceback.print_exc()
        print(f"make run failed: {error!r}; see {LOG.relative_to(ROOT)}", file=console, flush=True)
        raise SystemExit(1) from None
    out = ROOT / ".local" / "stack.json"
    out.write_text(json.dumps(handle, indent=2))
    print("\n".join(["", *summary(handle, str(LOG.relative_to(ROOT)), str(out.relative_to(ROOT))), "",
                     "Ctrl-C stops everything."]), file=console, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print("stopping…", file=console, flush=True)
    reference.stop()
    system.stop()


def start() -> tuple[LocalSystem, "ReferenceChannel", dict]:
    """The system, seeded, with the reference back end; and the handle written to ``.local/stack.json``."""
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
        "suppliers": [{"id": s["id"], "name": s["name"], "api_key": s["api_key"],
                       "workbench_link": _workbench_link(system.base_url, s["api_key"])} for s in shown.seeded.suppliers],
        "payment_password": shown.password,
        "settled": {"period_id": shown.settled, "statements": statement_links(system.base_url, shown)},
        "reference_channel": {"url": reference.url, "state": f"{reference.url}/state.json"},
        "dynamodb_endpoint": system.dynamodb.endpoint,
        "s3_endpoint": system.moto.endpoint,
    }
    return system, reference, handle


if __name__ == "__main__":
    main()
