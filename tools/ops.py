"""The ops CLI: the admin routes from a terminal. `python -m tools.ops --help`.

Locally it reads the base URL and the local ops token from `.local/stack.json`;
against a deployed stage pass `--base-url https://…/api --iam` and it signs each
request with your AWS credentials (SigV4, service execute-api), as API
Gateway's IAM authorisation requires.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

import requests

from tools.engines import ROOT

Builder = Callable[[argparse.Namespace], tuple[str, str, Any]]

COMMANDS: dict[str, tuple[str, list[str], Builder]] = {
    "suppliers": ("list suppliers by status", ["--status"],
                  lambda a: ("GET", f"/ops/suppliers?status={a.status or 'applied'}", None)),
    "supplier": ("show a supplier and its keys", ["id"], lambda a: ("GET", f"/ops/suppliers/{a.id}", None)),
    "supplier-create": ("create an active supplier (JSON body)", ["body"],
                        lambda a: ("POST", "/ops/suppliers", json.loads(a.body))),
    "supplier-approve": ("approve an application", ["id"], lambda a: ("POST", f"/ops/suppliers/{a.id}/approve", {})),
    "supplier-reject": ("reject an application", ["id", "reason"],
                        lambda a: ("POST", f"/ops/suppliers/{a.id}/reject", {"reason": a.reason})),
    "supplier-key": ("issue a new API key", ["id", "--revoke-existing"],
                     lambda a: ("POST", f"/ops/suppliers/{a.id}/keys", {"revoke_existing": bool(a.revoke_existing)})),
    "supplier-signin-link": ("a one-time workbench sign-in link for a supplier's staff (15 min)", ["id"],
                             lambda a: ("POST", f"/ops/suppliers/{a.id}/signin-links", {})),
    "supplier-revoke": ("revoke an API key", ["id", "key_id"],
                        lambda a: ("DELETE", f"/ops/suppliers/{a.id}/keys/{a.key_id}", None)),
    "review": ("goods waiting for review (or --status)", ["--status"],
               lambda a: ("GET", f"/ops/goods?status={a.status or 'pending_review'}", None)),
    "goods": ("show goods", ["id"], lambda a: ("GET", f"/ops/goods/{a.id}", None)),
    "goods-audit": ("a goods' audit trail", ["id"], lambda a: ("GET", f"/ops/goods/{a.id}/audit", None)),
    "goods-approve": ("approve with base prices SKU=FEN …", ["id", "prices*", "--allow-loss"],
                      lambda a: ("POST", f"/ops/goods/{a.id}/approve",
                                 {"base_prices": {k: int(v) for k, v in (p.split("=", 1) for p in a.prices)},
                                  "allow_loss": bool(a.allow_loss)})),
    "goods-reject": ("reject goods with a reason", ["id", "reason"],
                     lambda a: ("POST", f"/ops/goods/{a.id}/reject", {"reason": a.reason})),
    "goods-off-sale": ("take goods out of the master pool", ["id"],
                       lambda a: ("POST", f"/ops/goods/{a.id}/off-sale", {})),
    "channels": ("list channels", [], lambda a: ("GET", "/ops/channels", None)),
    "channel": ("show a channel", ["code"], lambda a: ("GET", f"/ops/channels/{a.code}", None)),
    "channel-create": ("create a channel (JSON body)", ["body"],
                       lambda a: ("POST", "/ops/channels", json.loads(a.body))),
    "channel-edit": ("change a channel (JSON body)", ["code", "body"],
                     lambda a: ("PATCH", f"/ops/channels/{a.code}", json.loads(a.body))),
    "suspend": ("suspend a channel now", ["code"], lambda a: ("POST", f"/ops/channels/{a.code}/suspend", {})),
    "resume": ("resume a channel", ["code"], lambda a: ("POST", f"/ops/channels/{a.code}/resume", {})),
    "rotate-secret": ("new signing secret, old one valid for --overlap seconds", ["code", "--overlap"],
                      lambda a: ("POST", f"/ops/channels/{a.code}/secret",
                                 {"overlap_seconds": int(a.overlap or 86400)})),
    "rotate-webhook-secret": ("new webhook secret, the old one also signs for --overlap seconds", ["code", "--overlap"],
                              lambda a: ("POST", f"/ops/channels/{a.code}/webhook-secret",
                                         {"overlap_seconds": int(a.overlap or 86400)})),
    "webhooks-parked": ("order events parked after their last webhook retry", ["code"],
                        lambda a: ("GET", f"/ops/channels/{a.code}/webhooks/parked", None)),
    "webhooks-redrive": ("parked order events back to delivery, due now", ["code"],
                         lambda a: ("POST", f"/ops/channels/{a.code}/webhooks/redrive", {})),
    "pool": ("a channel's sub-pool with prices", ["code"], lambda a: ("GET", f"/ops/channels/{a.code}/pool", None)),
    "pool-put": ("add/price goods in a sub-pool (JSON prices body)", ["code", "goods_id", "body"],
                 lambda a: ("PUT", f"/ops/channels/{a.code}/pool/{a.goods_id}", json.loads(a.body))),
    "pool-remove": ("remove goods from a sub-pool", ["code", "goods_id"],
                    lambda a: ("DELETE", f"/ops/channels/{a.code}/pool/{a.goods_id}", None)),
    "quota": ("a channel's current quota period (what members redeem within): limit, remaining, ends", ["code"],
              lambda a: ("GET", f"/ops/channels/{a.code}/quota", None)),
    "quota-period-open": ("open a channel's quota period (JSON: period_id, starts_at, ends_at[, quota_points, "
                          "shards]); not a settlement period", ["code", "body"],
                          lambda a: ("POST", f"/ops/channels/{a.code}/periods", json.loads(a.body))),
    "losses": ("prices below settlement ops accepted", ["code"],
               lambda a: ("GET", f"/ops/channels/{a.code}/losses", None)),
    "settle": ("start (or re-run: same statements, same bytes) a settlement period's run: YYYY-MM or YYYY-Www "
               "(never a quota period such as DEMO); with no argument, list the settlement periods that can be settled",
               ["period?"], lambda a: ("POST", f"/ops/settlement/{a.period}", {}) if a.period
               else ("GET", "/ops/settlement", None)),
    "settlement": ("a settlement period's run: state, totals and every statement", ["period"],
                   lambda a: ("GET", f"/ops/settlement/{a.period}", None)),
    "statement": ("one statement with its SHA-256 and a short-lived download link", ["id"],
                  lambda a: ("GET", f"/ops/statements/{a.id}", None)),
    "refunds-borne-by": ("who bears a supplier's refunds after shipment: supplier or platform", ["id", "borne_by"],
                         lambda a: ("PUT", f"/ops/suppliers/{a.id}/refunds-borne-by", {"borne_by": a.borne_by})),
    "call": ("any admin route: METHOD PATH [JSON]", ["method", "path", "body?"],
             lambda a: (a.method.upper(), a.path, json.loads(a.body) if a.body else None)),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ops", description="Channel Mall ops CLI")
    parser.add_argument("--base-url", help="API base URL (default: .local/stack.json)")
    parser.add_argument("--token", help="local ops token (default: .local/stack.json)")
    parser.add_argument("--iam", action="store_true", help="sign with AWS credentials (deployed stages)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, args, _) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text)
        for arg in args:
            if arg.startswith("--"):
                cmd.add_argument(arg, action="store_true" if arg == "--revoke-existing" or arg == "--allow-loss"
                                 else "store")
            elif arg.endswith("*"):
                cmd.add_argument(arg[:-1], nargs="*")
            elif arg.endswith("?"):
                cmd.add_argument(arg[:-1], nargs="?")
            else:
                cmd.add_argument(arg)
    return parser


def _send(method: str, url: str, body: Any, token: str | None, iam: bool) -> requests.Response:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if iam:
        import boto3
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = boto3.Session()
        signed = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(session.get_credentials(), "execute-api", session.region_name or "us-east-1").add_auth(signed)
        headers = dict(signed.headers)
    elif token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, data=data, headers=headers, timeout=30)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    base_url, token = args.base_url, args.token
    if not base_url or (not token and not args.iam):
        handle_file = ROOT / ".local" / "stack.json"
        if not handle_file.exists():
            print("no --base-url/--token and no .local/stack.json: start `make run` first", file=sys.stderr)
            return 2
        handle = json.loads(handle_file.read_text())
        base_url, token = base_url or handle["base_url"], token or handle["ops_token"]
    method, path, body = COMMANDS[args.command][2](args)
    try:
        response = _send(method, base_url.rstrip("/") + path, body, token, args.iam)
    except requests.ConnectionError:
        print(f"cannot reach {base_url}: is `make run` still running?", file=sys.stderr)
        return 2
    try:
        print(json.dumps(response.json(), indent=2, ensure_ascii=False))
    except ValueError:
        print(response.text)
    return 0 if response.ok else 1


if __name__ == "__main__":
    sys.exit(main())
