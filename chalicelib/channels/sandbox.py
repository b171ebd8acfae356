"""The integration sandbox: tells a channel's developer why a signature fails.

Only sandbox channels have it (a live channel answers 404 exactly as an unknown one):
a sandbox is created as one and never becomes live, its orders never reach a
supplier and are never settled, so a signature it explains moves nothing of value
and never opens another channel. It shows the string to sign (an entry link's
canonical query, or a server-to-server call's method, path and canonical query)
and the signature the server expects, never the secret, and spends no nonce. It
is rate-limited per channel and per caller address.
"""
from __future__ import annotations

import time
from typing import Mapping

from chalicelib.channels import channels
from chalicelib.channels.models import Nonce
from chalicelib.channels.signing import KEY, WINDOW_SECONDS, body_sha256, canonical, encode, sign, string_to_sign
from chalicelib.core import ratelimit
from chalicelib.core.errors import DomainError, NotFound

WINDOW = 60
PER_CHANNEL = 60   # checks per channel per minute
PER_ADDRESS = 240  # checks per caller address per minute, over all sandbox channels


def _diagnose(theirs: str, ours: str) -> str:
    """Name the rule a channel's own canonical string breaks."""
    if theirs == ours:
        return "none"
    their_pairs = theirs.split("&")
    our_pairs = ours.split("&")
    if sorted(their_pairs) == sorted(our_pairs):
        return "key_order"
    their_keys = [p.split("=", 1)[0] for p in their_pairs]
    our_keys = [p.split("=", 1)[0] for p in our_pairs]
    if sorted(their_keys) == sorted(our_keys):
        return "encoding"
    return "parameters"


def _diagnose_string(theirs: str, method: str | None, path: str | None, ours: str) -> list[str]:
    """Their string to sign against ours: the method and path lines of a server-to-server call, then the query."""
    if method is None:
        if "\n" in theirs:
            return ["entry_link_signs_query_only"]
        rule = _diagnose(theirs, ours)
        return [] if rule == "none" else [rule]
    lines = theirs.split("\n")
    if len(lines) != 3:
        rule = _diagnose(theirs, ours)
        return ["method_and_path_missing"] + ([] if rule == "none" else [rule])
    failed = [name for name, given, expected in (("method", lines[0], method.upper()), ("path", lines[1], path))
              if given != expected]
    rule = _diagnose(lines[2], ours)
    return failed + ([] if rule == "none" else [rule])


def sandbox_channel(code: str):
    """The channel, only when it is a sandbox: a live channel has no such route."""
    try:
        channel = channels.get(code)
    except DomainError:
        channel = None
    if channel is None or not channel.sandbox:
        raise NotFound("not_found", "no such route")
    return channel


def check(code: str, params: Mapping[str, str], their_canonical: str | None, method: str | None = None,
          path: str | None = None, body: str | None = None, source_ip: str | None = None,
          now: float | None = None) -> dict:
    channel = sandbox_channel(code)
    now = time.time() if now is None else now
    ratelimit.hit(f"sandbox#{code}", PER_CHANNEL, WINDOW, now,
                  message=f"at most {PER_CHANNEL} signature checks a minute for one channel")
    if source_ip:
        ratelimit.hit(f"sandbox-ip#{source_ip}", PER_ADDRESS, WINDOW, now,
                      message=f"at most {PER_ADDRESS} signature checks a minute from one address")
    params = {str(k): str(v) for k, v in params.items()}
    failed: list[str] = []
    if body is not None:
        given = params.get("body_sha256")
        params["body_sha256"] = body_sha256(body.encode())
        if given is not None and given != params["body_sha256"]:
            failed.append("body_sha256")
    if any(not KEY.fullmatch(k) for k in params):
        failed.append("invalid_parameter")
    ours = canonical(params)
    expected = sign(params, channel.secret, method, path)
    missing = [f for f in ("timestamp", "nonce", "sign") if not params.get(f)]
    if missing:
        failed.append("missing_field")
    skew = None
    try:
        skew = int(now - int(params.get("timestamp", "")))
        if abs(skew) > WINDOW_SECONDS:
            failed.append("time_window")
    except ValueError:
        failed.append("time_window")
    nonce = params.get("nonce", "")
    if nonce and not 16 <= len(nonce) <= 64:
        failed.append("nonce_format")
    elif nonce and Nonce.count(f"{code}#{nonce}") > 0:
        failed.append("nonce_replayed")
    signature_ok = params.get("sign", "").lower() in {
        sign(params, s, method, path) for s in channels.accepted_secrets(channel, now)}
    if not signature_ok:
        failed.append("signature")
    if their_canonical is not None:
        failed += _diagnose_string(their_canonical, method, path, ours)
    return {"kind": "entry_link" if method is None else "server_to_server",
            "canonical": ours, "string_to_sign": string_to_sign(params, method, path),
            "body_sha256": params.get("body_sha256"),
            "expected_sign": expected, "signature_ok": signature_ok,
            "clock_skew_seconds": skew, "failed": failed, "ok": not failed,
            "encoding_example": {"space": encode(" "), "slash": encode("/"), "tilde": encode("~")}}
