"""The integration sandbox: tells a channel's developer why a signature fails.

Only for channels marked ``sandbox``; it shows the canonical string and the
signature the server expects, never the secret, and spends no nonce.
"""
from __future__ import annotations

import time
from typing import Mapping

from chalicelib import channels
from chalicelib.errors import NotFound
from chalicelib.models import Nonce
from chalicelib.signing import WINDOW_SECONDS, canonical, encode, sign


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


def check(code: str, params: Mapping[str, str], their_canonical: str | None, now: float | None = None) -> dict:
    channel = channels.get(code)
    if not channel.sandbox:
        raise NotFound("not_found", "no such route")
    now = time.time() if now is None else now
    params = {str(k): str(v) for k, v in params.items()}
    ours = canonical(params)
    expected = sign(params, channel.secret)
    failed: list[str] = []
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
    signature_ok = params.get("sign", "").lower() in {sign(params, s) for s in channels.accepted_secrets(channel, now)}
    if not signature_ok:
        failed.append("signature")
    rule = _diagnose(their_canonical, ours) if their_canonical is not None else None
    if rule and rule != "none":
        failed.append(rule)
    return {"canonical": ours, "expected_sign": expected, "signature_ok": signature_ok,
            "clock_skew_seconds": skew, "failed": failed, "ok": not failed,
            "encoding_example": {"space": encode(" "), "slash": encode("/"), "tilde": encode("~")}}
