"""Standard Webhooks signatures, both kinds, as plain functions (no I/O).

* ``v1``: base64 HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}`` keyed with the bytes after
  ``whsec_``. The channel holds the same secret, so whoever can verify can also forge.
* ``v1a``: base64 Ed25519 signature of the same string with our private key (``whsk_`` + base64 of its 32-byte
  seed, kept by us only); the channel verifies with the public key (``whpk_`` + base64 of its 32 bytes), which
  is no secret: a leaked public key lets nobody forge a delivery.

A delivery carries every signature in force, space-separated; a receiver accepts the delivery when any one
it can check verifies (during a rotation's overlap, the old key's and the new key's both come).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # ``cryptography`` is imported by the functions that need it: not on every cold start
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SECRET_KEY_PREFIX, PUBLIC_KEY_PREFIX = "whsk_", "whpk_"


def _content(msg_id: str, timestamp: int, body: str) -> bytes:
    return f"{msg_id}.{timestamp}.{body}".encode()


def v1(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256>`` keyed with the bytes after ``whsec_``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + base64.b64encode(hmac.new(key, _content(msg_id, timestamp, body), hashlib.sha256).digest()).decode()


def new_signing_key() -> str:
    """A fresh Ed25519 private key, ``whsk_`` + base64 of its seed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return SECRET_KEY_PREFIX + base64.b64encode(seed).decode()


def _private(signing_key: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(signing_key.removeprefix(SECRET_KEY_PREFIX)))


def public_key(signing_key: str) -> str:
    """The ``whpk_`` public key a channel verifies ``v1a`` signatures with."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = _private(signing_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def v1a(signing_key: str, msg_id: str, timestamp: int, body: str) -> str:
    """``v1a,<base64 Ed25519 signature>`` with our private key."""
    return "v1a," + base64.b64encode(_private(signing_key).sign(_content(msg_id, timestamp, body))).decode()


def verify_v1a(public: str, msg_id: str, timestamp: int, body: str, header: str) -> bool:
    """Whether any ``v1a`` signature in a ``webhook-signature`` header verifies with this public key (what a
    channel does; our tests and the reference back end check our deliveries with it)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public.removeprefix(PUBLIC_KEY_PREFIX)))
    for part in header.split():
        version, _, signature = part.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(signature), _content(msg_id, timestamp, body))
            return True
        except (InvalidSignature, ValueError):
            continue
    return False
