"""Statement exports in S3 (the uploads bucket, under ``settlement/``, which no upload link can write) and
who may fetch which: a channel its own, through a signed server-to-server call; a supplier its own, with its
API key; ops any. A fetch answers the statement's record (totals, SHA-256 and length of the export) and a
presigned GET link valid ``LINK_SECONDS``, so the bytes never pass through the API and either side can prove
what it downloaded."""
from __future__ import annotations

import hashlib
import json

from pynamodb.exceptions import DoesNotExist

from chalicelib.core import bucket, config
from chalicelib.core.errors import NotFound
from chalicelib.core.models import plain
from chalicelib.settlement.models import Statement

PREFIX = "settlement/"
LINK_SECONDS = 300
LIST_LIMIT = 60


def put(key: str, data: bytes, content_type: str) -> str:
    """Write ``data`` at ``key`` (the same bytes every time for the same key: statement keys name their
    content, ``runs.export_key``); its SHA-256."""
    bucket._s3().put_object(Bucket=config.UPLOAD_BUCKET, Key=key, Body=data, ContentType=content_type)
    return hashlib.sha256(data).hexdigest()


def get(key: str) -> bytes:
    return bucket._s3().get_object(Bucket=config.UPLOAD_BUCKET, Key=key)["Body"].read()


def json_bytes(value: object) -> bytes:
    """The one JSON form of what settlement writes: sorted keys, no spaces (same value, same bytes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()



def get_json(key: str) -> object:
    return json.loads(get(key))


def link(statement: Statement) -> str:
    file_name = statement.statement_id.replace(".", "-") + ".csv"
    return bucket._s3().generate_presigned_url("get_object", ExpiresIn=LINK_SECONDS, Params={
        "Bucket": config.UPLOAD_BUCKET, "Key": statement.export_key,
        "ResponseContentDisposition": f'attachment; filename="{file_name}"'})


def view(statement: Statement, with_link: bool = False) -> dict:
    totals = plain(statement.totals)
    days = list(statement.days or [])
    shown = {"statement_id": statement.statement_id, "period_id": statement.period_id, "party": statement.party,
             "first_day": days[0] if days else None, "last_day": days[-1] if days else None,
             "totals": {k: int(v) for k, v in sorted(totals.items())}, "sha256": statement.sha256,
             "bytes": int(statement.byte_length), "created_at": statement.created_at}
    if with_link:
        shown |= {"download_url": link(statement), "expires_in": LINK_SECONDS}
    return shown


def of_party(party: str, statement_id: str) -> Statement:
    """The party's own statement; another party's, or none, answer the same 404."""
    try:
        statement = Statement.get(statement_id)
    except DoesNotExist:
        statement = None
    if statement is None or statement.party != party:
        raise NotFound("statement_not_found", f"no statement {statement_id}")
    return statement


def list_party(party: str) -> list[dict]:
    """The party's statements, newest period first (at most ``LIST_LIMIT``), without links."""
    return [view(s) for s in Statement.party_index.query(party, scan_index_forward=False, limit=LIST_LIMIT)]


def fetch(party: str, statement_id: str) -> dict:
    return view(of_party(party, statement_id), with_link=True)


def fetch_any(statement_id: str) -> dict:
    """Ops: any statement, the platform's margin included."""
    try:
        return view(Statement.get(statement_id), with_link=True)
    except DoesNotExist:
        raise NotFound("statement_not_found", f"no statement {statement_id}") from None
