"""The uploads bucket (S3): signed POST links in, objects read back for processing."""
from __future__ import annotations

from functools import cache

import boto3
from botocore.config import Config

from chalicelib import config


@cache
def _s3():
    return boto3.client("s3", region_name=config.REGION,
                        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 3}))


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


def download_url(key: str, expires_in: int = 3600) -> str:
    return _s3().generate_presigned_url("get_object", Params={"Bucket": config.UPLOAD_BUCKET, "Key": key},
                                        ExpiresIn=expires_in)
