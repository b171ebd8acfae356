"""The SMS port: Amazon SNS in AWS, a local outbox file (one JSON line per message) on the local stack."""
from __future__ import annotations

import json
import threading
import time
from functools import cache

import boto3

from chalicelib.core import config

_lock = threading.Lock()


@cache
def _sns():
    return boto3.client("sns", region_name=config.REGION)


def send(mobile: str, text: str) -> None:
    if config.SMS_OUTBOX:
        with _lock, open(config.SMS_OUTBOX, "a", encoding="utf-8") as outbox:
            outbox.write(json.dumps({"to": mobile, "text": text, "at": int(time.time())}, ensure_ascii=False) + "\n")
        return
    _sns().publish(PhoneNumber=mobile, Message=text,
                   MessageAttributes={"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"}})
