"""Sign an entry link as a channel would: `python -m tools.sign CHANNEL MEMBER_ID [key=value ...]`.

Reads the base URL and the channel's secret from `.local/stack.json` (written
by `make run`) unless --base-url / --secret are given. Each call makes a fresh
timestamp and nonce, since a link works once and for 300 seconds.
"""
from __future__ import annotations

import argparse
import json
import secrets
import time
from urllib.parse import urlencode

from chalicelib.signing import signed_params
from tools.engines import ROOT


def entry_link(base_url: str, channel_code: str, secret: str, member_id: str, **fields: str) -> str:
    params = {"member_id": member_id, **fields, "timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    return f"{base_url.rstrip('/')}/entry/{channel_code}?{urlencode(signed_params(params, secret))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("channel")
    parser.add_argument("member_id")
    parser.add_argument("fields", nargs="*", help="extra signed fields, e.g. nickname=Ann target=/goods/G1")
    parser.add_argument("--base-url")
    parser.add_argument("--secret")
    args = parser.parse_args()
    base_url, secret = args.base_url, args.secret
    if not (base_url and secret):
        handle = json.loads((ROOT / ".local" / "stack.json").read_text())
        base_url = base_url or handle["base_url"]
        channel = next((c for c in handle["channels"] if c["code"] == args.channel), None)
        if channel is None and not secret:
            parser.error(f"channel {args.channel} is not in .local/stack.json; pass --secret")
        secret = secret or channel["secret"]
    extra = dict(f.split("=", 1) for f in args.fields)
    print(entry_link(base_url, args.channel, secret, args.member_id, **extra))


if __name__ == "__main__":
    main()
