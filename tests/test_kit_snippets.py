"""The integration kit's snippets (Python, Node.js, Java, PHP), each run as the CLI a channel's CI would run:
both contract test vectors exactly, the same string and signature as our own ``signing`` on a few hundred
random inputs (reserved, unicode and astral characters, the ``sign`` key itself), and Standard Webhooks
deliveries made by the ``standardwebhooks`` package verified or refused for the right reason.

Each language runs once for the whole module (one batch of tasks): a JVM start costs seconds."""
from __future__ import annotations

import base64
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from chalicelib.channels import signing
from chalicelib.partners.kit import snippets

VECTOR_SECRET = "test-secret-123"
ENTRY_VECTOR = {"member_id": "M 1001/å", "nickname": "张三", "points": "1500", "target": "/goods/G1?x=1&y=2",
                "timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8"}
ENTRY_STRING = ("member_id=M%201001%2F%C3%A5&nickname=%E5%BC%A0%E4%B8%89&nonce=a1b2c3d4e5f6a7b8&points=1500"
                "&target=%2Fgoods%2FG1%3Fx%3D1%26y%3D2&timestamp=1767225600")
ENTRY_SIGN = "40bb2b5b581590bbdc45f15bc1fd3b0a256efa3b827131f1d11d1abfb494dff6"
S2S_BODY = '{"member_id":"M1001","grant_id":"G-20260101-1","points":500}'
S2S_HASH = "cbddcd2900655f821f7100e0a6533a8e8d56c0d0207ab961a48de0fb45ef4b61"
S2S_STRING = f"POST\n/partner/bank-a/grants\nbody_sha256={S2S_HASH}&nonce=a1b2c3d4e5f6a7b8&timestamp=1767225600"
S2S_SIGN = "d7442ad6dbc2146d3d5333a0cb03c21aac5de58038f0c3c3c5d0b2c0bb36277b"
RANDOM_CASES = 300
NOW = 1_767_225_600

KEY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
VALUE_CHARS = (" !\"#$%&'()*+,/:;<=>?@[\\]^`{|}~-_.\t\n" + KEY_CHARS + "åéüß张三李四ー한글Ωж€£\u00a0\u200b\u0301"
               "😀👍🏽𝄞")


def _text(rng: random.Random, longest: int) -> str:
    """Reserved and unreserved ASCII, controls, accents, CJK, combining marks, astral-plane characters; sometimes
    a random code point from anywhere outside the surrogates (which UTF-8 cannot carry)."""
    out = []
    for _ in range(rng.randint(0, longest)):
        if rng.random() < 0.15:
            point = rng.randint(1, 0x10FFFF)
            out.append(chr(point if not 0xD800 <= point <= 0xDFFF else 0xE000))
        else:
            out.append(rng.choice(VALUE_CHARS))
    return "".join(out)


def _random_sign_task(rng: random.Random) -> dict:
    params = {"".join(rng.choice(KEY_CHARS) for _ in range(rng.randint(1, 12))): _text(rng, 30)
              for _ in range(rng.randint(1, 8))}
    if rng.random() < 0.2:
        params["sign"] = _text(rng, 10)  # never part of the string
    task: dict = {"op": "sign", "secret": _text(rng, 40) or "s", "params": params}
    if rng.random() < 0.6:
        task["method"] = rng.choice(["GET", "POST", "put", "Patch", "DELETE"])
        task["path"] = "/partner/" + signing.encode(_text(rng, 12)) + "/" + rng.choice(["grants", "orders/O-1", ""])
        if rng.random() < 0.7:
            task["body"] = _text(rng, 200) or "{}"
    return task


def _ours(task: dict) -> dict:
    """What ``chalicelib.channels.signing`` (the server) computes for a sign task."""
    params = dict(task["params"])
    if task.get("body") is not None:
        params["body_sha256"] = signing.body_sha256(task["body"].encode())
    method, path = task.get("method"), task.get("path")
    return {"canonical_query": signing.canonical(params), "body_sha256": params.get("body_sha256"),
            "string_to_sign": signing.string_to_sign(params, method, path),
            "sign": signing.sign(params, task["secret"], method, path)}


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _webhook_cases() -> list[tuple[dict, dict]]:
    """(task, expected result): deliveries signed by the ``standardwebhooks`` package."""
    secret, other, old = _whsec(), _whsec(), _whsec()
    body = '{"id":"evt_order.paid_O-1","type":"order.paid","data":{"member_id":"M 1001/å","note":"张三 😀"}}'

    def delivery(msg_id: str, at: int, signed_body: str, *keys: str) -> dict:
        stamp = datetime.fromtimestamp(at, tz=timezone.utc)
        return {"webhook-id": msg_id, "webhook-timestamp": str(at),
                "webhook-signature": " ".join(Webhook(k).sign(msg_id, stamp, signed_body) for k in keys)}

    def task(headers: dict, verify_with: str = secret, sent_body: str = body) -> dict:
        return {"op": "verify_webhook", "secret": verify_with, "headers": headers, "body": sent_body, "now": NOW}

    good = delivery("evt_1", NOW, body, secret)
    rotated = delivery("evt_2", NOW - 10, body, old, secret)
    valid_sig = good["webhook-signature"].split(",", 1)[1]
    accepted = {"ok": True, "webhook_id": "evt_1"}

    def refused(code: str) -> dict:
        return {"ok": False, "error": code}

    return [
        (task(good), accepted),
        (task({k.upper(): v for k, v in good.items()}), accepted),  # header names are case-insensitive
        (task(good, verify_with=other), refused("bad_signature")),
        (task(good, sent_body=body.replace("O-1", "O-2")), refused("bad_signature")),
        (task(good, sent_body=body + " "), refused("bad_signature")),
        (task(delivery("evt_3", NOW - 301, body, secret)), refused("timestamp_expired")),
        (task(delivery("evt_4", NOW + 301, body, secret)), refused("timestamp_expired")),
        (task(delivery("evt_5", NOW - 299, body, secret)), {"ok": True, "webhook_id": "evt_5"}),
        (task(rotated, verify_with=secret), {"ok": True, "webhook_id": "evt_2"}),
        (task(rotated, verify_with=old), {"ok": True, "webhook_id": "evt_2"}),
        (task(rotated, verify_with=other), refused("bad_signature")),
        (task(dict(good, **{"webhook-signature": f"v1,!!notbase64 v1,{valid_sig}"})), accepted),
        (task(dict(good, **{"webhook-signature": f"v2,{valid_sig}"})), refused("bad_signature")),
        (task(dict(good, **{"webhook-signature": "v1,"})), refused("bad_signature")),
        (task({k: v for k, v in good.items() if k != "webhook-signature"}), refused("missing_header")),
        (task(dict(good, **{"webhook-timestamp": "soon"})), refused("invalid_timestamp")),
        (task(dict(good, **{"webhook-id": "evt_other"})), refused("bad_signature")),  # the id is signed too
        *_v1a_cases(body, secret),
    ]


def _ed25519_pair() -> tuple[Any, str]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, "whpk_" + base64.b64encode(raw).decode()


def _v1a_cases(body: str, secret: str) -> list[tuple[dict, dict]]:
    """Standard Webhooks ``v1a``: Ed25519 over ``{id}.{timestamp}.{body}``, signed here with ``cryptography``,
    verified by each snippet with the ``whpk_`` public key; beside a ``v1`` one, and two during a rotation."""
    (new, new_pk), (old, old_pk), (_, other_pk) = _ed25519_pair(), _ed25519_pair(), _ed25519_pair()

    def v1a(private: Any, msg_id: str, at: int, signed_body: str) -> str:
        return "v1a," + base64.b64encode(private.sign(f"{msg_id}.{at}.{signed_body}".encode())).decode()

    def delivery(msg_id: str, signatures: list[str], at: int = NOW) -> dict:
        return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": " ".join(signatures)}

    def task(headers: dict, key: str, sent_body: str = body) -> dict:
        return {"op": "verify_webhook", "secret": key, "headers": headers, "body": sent_body, "now": NOW}

    stamp = datetime.fromtimestamp(NOW, tz=timezone.utc)
    both = delivery("evt_a1", [Webhook(secret).sign("evt_a1", stamp, body), v1a(new, "evt_a1", NOW, body)])
    rotated = delivery("evt_a2", [v1a(old, "evt_a2", NOW, body), v1a(new, "evt_a2", NOW, body)])
    only_v1 = delivery("evt_a3", [Webhook(secret).sign("evt_a3", stamp, body)])
    return [
        (task(both, new_pk), {"ok": True, "webhook_id": "evt_a1"}),  # the public key checks the v1a signature
        (task(both, secret), {"ok": True, "webhook_id": "evt_a1"}),  # the secret still checks the v1 one
        (task(both, other_pk), {"ok": False, "error": "bad_signature"}),
        (task(both, new_pk, sent_body=body + " "), {"ok": False, "error": "bad_signature"}),
        (task(rotated, old_pk), {"ok": True, "webhook_id": "evt_a2"}),
        (task(rotated, new_pk), {"ok": True, "webhook_id": "evt_a2"}),
        (task(only_v1, new_pk), {"ok": False, "error": "bad_signature"}),  # a v1 never passes for a v1a
        (task(delivery("evt_a4", [v1a(new, "evt_a4", NOW, body).replace("v1a,", "v1,")]), new_pk),
         {"ok": False, "error": "bad_signature"}),
    ]


def _vector_tasks() -> list[dict]:
    return [{"op": "sign", "secret": VECTOR_SECRET, "params": ENTRY_VECTOR},
            {"op": "sign", "secret": VECTOR_SECRET, "method": "POST", "path": "/partner/bank-a/grants",
             "params": {"timestamp": "1767225600", "nonce": "a1b2c3d4e5f6a7b8"}, "body": S2S_BODY}]


def _command(language: str) -> list[str]:
    path = str(snippets.path(language))
    return {"python": [sys.executable, path], "node": ["node", path], "java": ["java", path],
            "php": ["php", path]}[language]


@pytest.fixture(scope="module")
def batch() -> dict:
    rng = random.Random(20261125)
    randoms = [_random_sign_task(rng) for _ in range(RANDOM_CASES)]
    webhooks = _webhook_cases()
    tasks = _vector_tasks() + randoms + [t for t, _ in webhooks]
    return {"tasks": tasks, "randoms": randoms, "webhooks": webhooks, "stdin": json.dumps(tasks)}


@pytest.fixture(scope="module", params=snippets.LANGUAGES)
def results(request, batch) -> list[dict]:
    """The snippet's answers to the whole batch, from one run of its CLI. Java runs where the machine has a JDK
    (skipped, saying so, where not); PHP must be there in CI (``make install`` installs Debian's php-cli)."""
    runtime = _command(request.param)[0]
    if shutil.which(runtime) is None:
        if request.param == "java":
            pytest.skip("no JDK on this machine: the Java snippet was not run")
        if os.environ.get("CI") or request.param != "php":
            pytest.fail(f"{runtime} is missing (`make install` installs php-cli; Python and Node come with the stack)")
        pytest.skip("php is not installed here (run `make install`)")
    run = subprocess.run(_command(request.param), input=batch["stdin"].encode(), capture_output=True, timeout=120,
                         cwd=Path(snippets.path(request.param)).parent)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    answers = json.loads(run.stdout)
    assert len(answers) == len(batch["tasks"])
    return answers


def test_contract_test_vectors(results):
    entry, s2s = results[:2]
    assert (entry["string_to_sign"], entry["sign"]) == (ENTRY_STRING, ENTRY_SIGN)
    assert (s2s["body_sha256"], s2s["string_to_sign"], s2s["sign"]) == (S2S_HASH, S2S_STRING, S2S_SIGN)


def test_agrees_with_the_server_on_random_inputs(batch, results):
    answers = results[2:2 + RANDOM_CASES]
    for task, answer in zip(batch["randoms"], answers):
        assert answer == _ours(task), task


def test_webhook_verification_against_standardwebhooks(batch, results):
    answers = results[2 + RANDOM_CASES:]
    for (task, expected), answer in zip(batch["webhooks"], answers):
        assert answer == expected, task["headers"]


def test_random_inputs_cover_what_breaks_encoders(batch):
    """The batch really holds the characters naive encoders get wrong, and the ``sign`` key."""
    text = json.dumps(batch["randoms"], ensure_ascii=False)
    for char in " +*~!'()/%&=😀张\u0301":
        assert char in text, char
    assert any("sign" in t["params"] for t in batch["randoms"])
    assert any(t.get("method") in ("put", "Patch") for t in batch["randoms"])
