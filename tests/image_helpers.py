"""Goods images for tests: real PNGs uploaded through the signed POST a supplier gets, as a browser would."""
from __future__ import annotations

import struct
import zlib

import requests

from helpers import ok, wait_for


def png(width: int = 48, height: int = 48, rgb: tuple[int, int, int] = (200, 60, 40)) -> bytes:
    """A valid, decodable PNG of one colour with a diagonal stripe (distinct bytes per colour and size)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00" + b"".join(bytes((255, 255, 255) if abs(x - y) < 3 else rgb) for x in range(width))
        for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def link(sup, kind: str = "image", content_type: str = "image/png") -> dict:
    return ok(sup.post("/supplier/uploads", json={"kind": kind, "content_type": content_type}), 201)


def post(upload_link: dict, data: bytes, filename: str = "image.png") -> None:
    r = requests.post(upload_link["url"], data=upload_link["fields"],
                      files={"file": (filename, data, upload_link["content_type"])}, timeout=30)
    assert r.status_code in (200, 201, 204), r.text


def settled(sup, upload_id: str) -> dict:
    return wait_for(lambda: ok(sup.get(f"/supplier/uploads/{upload_id}")), lambda u: u["status"] != "issued")


def upload_image(sup, data: bytes | None = None) -> str:
    """Upload a PNG through a signed POST and wait until it is processed; its upload id."""
    upload_link = link(sup)
    post(upload_link, data if data is not None else png())
    upload = settled(sup, upload_link["upload_id"])
    assert upload["status"] == "processed", upload
    return upload_link["upload_id"]
