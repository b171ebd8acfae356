"""The uploads bucket (S3): signed POST links in, objects read back for processing, image links out.

Suppliers write only under ``uploads/`` (through signed POSTs; that prefix expires). An image that
passes its checks is copied once to ``images/{supplier_id}/{upload_id}``, which no link can write
to and nothing expires, so the bytes ops approved are the bytes members are shown, for good.
"""
from __future__ import annotations

import time
from functools import cache, lru_cache

import boto3
from botocore.config import Config

from chalicelib.core import config

IMAGES_PREFIX = "images/"


@cache
def _s3():
    return boto3.client("s3", region_name=config.REGION,
                        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 3},
                                      signature_version="s3v4"))  # SigV4 links work in every region


def presigned_post(key: str, content_type: str, max_bytes: int, expires_in: int) -> dict:
    """A browser-usable POST whose policy pins key, type, size range and expiry."""
    return _s3().generate_presigned_post(
        Bucket=config.UPLOAD_BUCKET,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
        ExpiresIn=expires_in,
    )


def head(key: str) -> tuple[int, str]:
    meta = _s3().head_object(Bucket=config.UPLOAD_BUCKET, Key=key)
    return int(meta["ContentLength"]), meta.get("ContentType", "")


def read(key: str, max_bytes: int) -> bytes:
    return _s3().get_object(Bucket=config.UPLOAD_BUCKET, Key=key, Range=f"bytes=0-{max_bytes - 1}")["Body"].read()


def delete(key: str) -> None:
    _s3().delete_object(Bucket=config.UPLOAD_BUCKET, Key=key)


def image_key(supplier_id: str, upload_id: str) -> str:
    return f"{IMAGES_PREFIX}{supplier_id}/{upload_id}"


def copy(source_key: str, key: str) -> None:
    _s3().copy_object(Bucket=config.UPLOAD_BUCKET, Key=key,
                      CopySource={"Bucket": config.UPLOAD_BUCKET, "Key": source_key})


def image_url(key: str) -> str:
    """A short-lived GET link (``IMAGE_LINK_SECONDS``) whose response carries ``IMAGE_CACHE_CONTROL``.

    Signing is local computation (no request to S3) but costs ~0.4 ms of CPU, so a link is reused
    within its ``IMAGE_LINK_REUSE_SECONDS`` window.
    """
    return _signed_image_url(key, int(time.time()) // config.IMAGE_LINK_REUSE_SECONDS)


@lru_cache(maxsize=4096)
def _signed_image_url(key: str, _window: int) -> str:
    return _s3().generate_presigned_url(
        "get_object", ExpiresIn=config.IMAGE_LINK_SECONDS,
        Params={"Bucket": config.UPLOAD_BUCKET, "Key": key, "ResponseCacheControl": config.IMAGE_CACHE_CONTROL})


def put(key: str, data: bytes, content_type: str) -> None:
    """Write an object we produce ourselves (never under ``uploads/``, which only signed links write)."""
    _s3().put_object(Bucket=config.UPLOAD_BUCKET, Key=key, Body=data, ContentType=content_type)


def download_url(key: str, expires_in: int, filename: str | None = None) -> str:
    """A short-lived GET link to an object we produced, optionally saved under ``filename``."""
    params = {"Bucket": config.UPLOAD_BUCKET, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    return _s3().generate_presigned_url("get_object", ExpiresIn=expires_in, Params=params)
