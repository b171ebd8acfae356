"""Runtime settings, read once from the Lambda environment.

Every deployed function and the local stack get the same variables; the
local stack only adds endpoint overrides (``DYNAMODB_ENDPOINT`` and boto3's
own ``AWS_ENDPOINT_URL_S3``).
"""
from __future__ import annotations

import os

# Local behaviour (the local ops token, cookies without Secure, the SMS outbox file) only when STAGE says
# "local" outright: a function deployed without STAGE fails closed, as a deployed stage.
STAGE: str = os.environ.get("STAGE", "").strip()
IS_LOCAL: bool = STAGE == "local"
TABLE_PREFIX: str = os.environ.get("TABLE_PREFIX", f"channelmall-{STAGE}-")
REGION: str = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
DYNAMODB_ENDPOINT: str | None = os.environ.get("DYNAMODB_ENDPOINT") or None
UPLOAD_BUCKET: str = os.environ.get("UPLOAD_BUCKET", f"channelmall-{STAGE}-uploads")
# Public base URL of the API, used to print entry links (API Gateway sets none itself).
PUBLIC_BASE_URL: str = os.environ.get("PUBLIC_BASE_URL", "")
# Local-only ops credential; never read outside the local stage.
LOCAL_OPS_TOKEN: str = os.environ.get("LOCAL_OPS_TOKEN", "") if IS_LOCAL else ""

IMAGE_MAX_BYTES: int = 5 * 1024 * 1024
IMAGE_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")
GOODS_CSV_MAX_BYTES: int = 2 * 1024 * 1024
GOODS_CSV_TYPE: str = "text/csv"
UPLOAD_LINK_SECONDS: int = 300
# Catalog image links: presigned GETs of approved goods images, valid this long; the object behind a
# link never changes (images are copied once to their own prefix), so browsers may cache it as long.
IMAGE_LINK_SECONDS: int = 900
# One process signs a given image's link once per this window and hands the same link out meanwhile
# (so every link it returns has at least IMAGE_LINK_SECONDS - IMAGE_LINK_REUSE_SECONDS = 600 s left,
# browsers hit their cache across pages, and a catalog page does not re-sign every card).
IMAGE_LINK_REUSE_SECONDS: int = 300
IMAGE_CACHE_CONTROL: str = f"private, max-age={IMAGE_LINK_SECONDS}, immutable"


def table_name(name: str) -> str:
    return f"{TABLE_PREFIX}{name}"

# Key that signs member sessions and hashes one-time codes. Deployed stages read it
# from Secrets Manager (SESSION_KEY_SECRET_ARN); the local stack makes one per run.
SESSION_KEY_SECRET_ARN: str = os.environ.get("SESSION_KEY_SECRET_ARN", "")
_LOCAL_SESSION_KEY: str = os.environ.get("SESSION_KEY") or os.urandom(32).hex()


def session_key() -> str:
    """The signing key, fetched once per five minutes per container (Powertools Parameters caches it)."""
    if not SESSION_KEY_SECRET_ARN:
        if not IS_LOCAL and not os.environ.get("SESSION_KEY"):
            raise RuntimeError("SESSION_KEY_SECRET_ARN is not configured")
        return _LOCAL_SESSION_KEY
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(SESSION_KEY_SECRET_ARN, max_age=300))
SESSION_SECONDS: int = int(os.environ.get("SESSION_SECONDS", "7200"))

# Where one-time payment codes go: SNS SMS in AWS; a local outbox file on the local stack.
SMS_OUTBOX: str = os.environ.get("SMS_OUTBOX", "") if IS_LOCAL else ""

# Order fulfilment (issue 10): the state machine each paid order's execution runs. Set by the template for the
# functions that start executions, and by the local stack for its machine on moto.
FULFILMENT_STATE_MACHINE_ARN: str = os.environ.get("FULFILMENT_STATE_MACHINE_ARN", "")
# Issue 16 #12: the state machine that retries a remote refund in doubt within seconds (``refunds.retry_soon``).
REFUND_RETRY_STATE_MACHINE_ARN: str = os.environ.get("REFUND_RETRY_STATE_MACHINE_ARN", "")


def fulfilment_seconds_override() -> tuple[int, int] | None:
    """Local stage only: ``FULFILMENT_SECONDS_OVERRIDE="shipping,receipt"`` replaces the channel's shipping
    deadline and receipt window (hours and days) with seconds, so tests run a whole order's life in seconds.
    Read on every call, so a test can set it around one checkout."""
    raw = os.environ.get("FULFILMENT_SECONDS_OVERRIDE", "") if IS_LOCAL else ""
    if not raw:
        return None
    shipping, receipt = (int(part) for part in raw.split(","))
    return shipping, receipt

# Settlement (issue 8): the state machine a period's run executes. Set by the template for the functions that
# start runs (the scheduler and the ops API), and by the local stack for its machine on moto.
SETTLEMENT_STATE_MACHINE_ARN: str = os.environ.get("SETTLEMENT_STATE_MACHINE_ARN", "")
