"""Sign requests as a channel would (contract version 2).

Entry link:        `python -m tools.sign CHANNEL MEMBER_ID [key=value ...]`
Server-to-server:  `python -m tools.sign CHANNEL --call METHOD PATH [--body JSON] [--send]`
                   e.g. `--call POST /partner/bank-a/grants --body '{"member_id":"M1001",...}'`;
                   PATH is relative to the base URL (no API stage), query included if any;
                   prints a curl command, or sends the request with --send.

Reads the base URL and the channel's secret from `.local/stack.json` (written
by `make run`) unless --base-url / --secret are given. Each call makes a fresh
timestamp and nonce, since a signature works once and for 300 seconds.
"""
from __future__ import annotations

import argparse
import json
import secrets
import shlex
import time
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from chalicelib.channels.signing import request_headers, signed_params
from tools.engines import ROOT


def entry_link(base_url: str, channel_code: str, secret: str, member_id: str, **fields: str) -> str:
    """An entry link: the canonical query alone is signed (values sent encoded as signed: a space is %20)."""
    params = {"member_id": member_id, **fields, "timestamp": str(int(time.time())), "nonce": secrets.token_hex(12)}
    return f"{base_url.rstrip('/')}/entry/{channel_code}?{urlencode(signed_params(params, secret), quote_via=quote)}"


def signed_request(base_url: str, secret: str, method: str, path: str, body: bytes = b"") -> tuple[str, dict[str, str]]:
    """The URL and headers of a server-to-server call: METHOD, PATH (relative to the base URL, as sent) and
    the canonical query (its own query parameters, timestamp, nonce, body_sha256) are signed."""
    parts = urlsplit(path)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    headers = request_headers(method, parts.path, body, secret, query)
    if body:
        headers["Content-Type"] = "application/json"
    return base_url.rstrip("/") + path, headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("channel")
    parser.add_argument("member_id", nargs="?", help="entry link: the member's id in the channel")
    parser.add_argument("fields", nargs="*", help="entry link: extra signed fields, e.g. nickname=Ann target=/goods/G1")
    parser.add_argument("--call", nargs=2, metavar=("METHOD", "PATH"), help="sign a server-to-server request")
    parser.add_argument("--body", default="", help="the request body (JSON), signed through its SHA-256")
    parser.add_argument("--send", action="store_true", help="send the signed request and print the answer")
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
    if args.call is None:
        if not args.member_id:
            parser.error("give MEMBER_ID for an entry link, or --call METHOD PATH")
        extra = dict(f.split("=", 1) for f in args.fields)
        print(entry_link(base_url, args.channel, secret, args.member_id, **extra))
        return
    method, path = args.call[0].upper(), args.call[1]
    if not path.startswith("/"):
        parser.error("PATH starts with / and is relative to the base URL, e.g. /partner/bank-a/grants")
    body = args.body.encode()
    url, headers = signed_request(base_url, secret, method, path, body)
    if args.send:
        import requests

        answer = requests.request(method, url, data=body or None, headers=headers, timeout=30,
                                  allow_redirects=False)
        print(answer.status_code, answer.text)
        return
    words = ["curl", "-sS", "-X", method, url] + [w for k, v in headers.items() for w in ("-H", f"{k}: {v}")]
    print(" ".join(shlex.quote(w) for w in words + (["--data-binary", args.body] if body else [])))


if __name__ == "__main__":
    main()
