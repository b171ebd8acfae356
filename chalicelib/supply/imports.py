"""Supplier uploads: signed links out, and what arrives in the bucket checked and imported.

No local S3 enforces POST policies, and in AWS a policy is only as good as
its conditions, so the object itself is checked again here: size, declared
type and (for images) the file's magic bytes; an image that passes is copied
to its own prefix, where goods reference it by upload id. A bulk goods file
(its ``images`` column: upload ids joined by ``|``) becomes goods awaiting review; goods ids come from the supplier's own ``ref``, so a file
imported twice, or the same event delivered twice, creates each goods once.
"""
from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Callable

from botocore.exceptions import ClientError
from pynamodb.exceptions import DoesNotExist

from chalicelib.core import bucket, config
from chalicelib.core.clock import now_iso
from chalicelib.core.errors import Conflict, NotFound, Unprocessable
from chalicelib.core.models import get_owned
from chalicelib.supply import goods
from chalicelib.supply.models import Upload

if TYPE_CHECKING:  # pydantic loads where a file is parsed, not with every cold start
    from chalicelib.core.schemas import GoodsDraft, UploadRequest

CSV_COLUMNS = ("ref", "title", "category", "sku_id", "spec", "settlement_price", "stock")
OPTIONAL_COLUMNS = ("description", "images")
SHIPMENTS_MAX_BYTES = 256 * 1024  # ~4,000 rows
MAGIC = {
    "image/jpeg": lambda b: b.startswith(b"\xff\xd8\xff"),
    "image/png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
}
KINDS = {
    "image": (config.IMAGE_TYPES, config.IMAGE_MAX_BYTES),
    "goods_csv": ((config.GOODS_CSV_TYPE,), config.GOODS_CSV_MAX_BYTES),
    "shipments": ((config.GOODS_CSV_TYPE,), SHIPMENTS_MAX_BYTES),
}
RECORD_DAYS = 90


def request_link(supplier_id: str, req: UploadRequest) -> dict:
    types, max_bytes = KINDS[req.kind]
    if req.content_type not in types:
        raise Unprocessable("unsupported_content_type",
                            f"{req.kind} uploads accept {', '.join(types)}", "content_type")
    upload_id = uuid.uuid4().hex
    key = f"uploads/{supplier_id}/{req.kind}/{upload_id}"
    Upload(upload_id, supplier_id=supplier_id, kind=req.kind, key=key, content_type=req.content_type,
           expires_at=timedelta(days=RECORD_DAYS)).save()
    post = bucket.presigned_post(key, req.content_type, max_bytes, config.UPLOAD_LINK_SECONDS)
    return {"upload_id": upload_id, "url": post["url"], "fields": post["fields"], "key": key,
            "max_bytes": max_bytes, "content_type": req.content_type, "expires_in": config.UPLOAD_LINK_SECONDS}


def view(u: Upload) -> dict:
    return {"upload_id": u.upload_id, "kind": u.kind, "key": u.key, "content_type": u.content_type,
            "status": u.status, "result": u.result.as_dict() if u.result else {}, "created_at": u.created_at,
            "processed_at": u.processed_at}


def get_own(supplier_id: str, upload_id: str) -> Upload:
    upload = get_owned(Upload, upload_id, "supplier_id", supplier_id)
    if upload is None:
        raise NotFound("upload_not_found", f"no upload {upload_id}")
    return upload


@dataclass
class CsvResult:
    drafts: list[tuple[list[int], GoodsDraft]] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    rows: int = 0


def parse_goods_csv(text: str) -> CsvResult:
    """Rows sharing a ``ref`` are one goods with several SKUs; any bad row holds back its whole goods."""
    from pydantic import ValidationError

    from chalicelib.core.schemas import GoodsDraft

    result = CsvResult()
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        result.errors.append({"line": 1, "reason": f"missing columns: {', '.join(missing)}"})
        return result
    groups: dict[str, dict] = {}
    bad_refs: set[str] = set()
    for row in reader:
        result.rows += 1
        line = reader.line_num
        ref = (row.get("ref") or "").strip()
        try:
            price, stock = int(row["settlement_price"]), int(row["stock"])
        except (TypeError, ValueError):
            result.errors.append({"line": line, "reason": "settlement_price and stock must be whole numbers"})
            bad_refs.add(ref)
            continue
        group = groups.setdefault(ref, {"lines": [], "head": row, "skus": []})
        group["lines"].append(line)
        group["skus"].append({"sku_id": (row["sku_id"] or "").strip(), "spec": row["spec"],
                              "settlement_price": price, "stock": stock, "line": line})
    for ref, group in groups.items():
        if ref in bad_refs:
            continue
        head = group["head"]
        data = {"ref": ref, "title": head["title"], "category": head["category"],
                "description": head.get("description") or "",
                "images": [i for i in (head.get("images") or "").split("|") if i],
                "skus": [{k: v for k, v in s.items() if k != "line"} for s in group["skus"]]}
        try:
            result.drafts.append((group["lines"], GoodsDraft.model_validate(data)))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(p) for p in err.get("loc", ())]
            line = group["lines"][int(loc[1])] if len(loc) > 1 and loc[0] == "skus" and loc[1].isdigit() \
                else group["lines"][0]
            result.errors.append({"line": line, "reason": f"{'.'.join(loc) or 'row'}: {err.get('msg')}"})
    result.errors.sort(key=lambda e: e["line"])
    return result


def _refuse(upload: Upload, reason: str) -> dict:
    bucket.delete(upload.key)
    result = {"refused": reason}
    upload.update([Upload.status.set("refused"), Upload.result.set(result), Upload.processed_at.set(now_iso())])
    return result


def process_object(bucket_name: str, key: str, ship: Callable[[str, bytes], dict]) -> dict:
    """Handle an S3 "Object Created" event for an upload link we issued. A shipments file's rows are applied by
    ``ship(supplier_id, data)`` (``orders.shipments.import_rows``, handed in by app.py: supply stands below orders)."""
    if bucket_name != config.UPLOAD_BUCKET or not key.startswith("uploads/"):
        return {"ignored": key}
    upload_id = key.rsplit("/", 1)[-1]
    try:
        upload = Upload.get(upload_id)
    except DoesNotExist:
        upload = None
    if upload is None or upload.key != key:
        bucket.delete(key)
        return {"ignored": key, "reason": "no upload link was issued for this key"}
    if upload.kind in ("image", "shipments") and upload.status == "processed":
        # an image's checked copy is what goods show; a shipments file's result is the supplier's record of
        # which rows were applied: a second POST through the same link, or a repeated event, changes nothing
        return {"ignored": key, "reason": f"this {upload.kind} upload was already processed"}
    types, max_bytes = KINDS[upload.kind]
    try:
        size, content_type = bucket.head(key)
    except ClientError as exc:  # a repeated event for an object already refused (and deleted)
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        return {"ignored": key, "reason": "the object no longer exists"}
    if size > max_bytes:
        return _refuse(upload, f"object is {size} bytes; the limit is {max_bytes}")
    if content_type != upload.content_type:
        return _refuse(upload, f"object type {content_type or 'none'} is not the declared {upload.content_type}")
    data = bucket.read(key, max_bytes)
    if upload.kind == "image":
        if not MAGIC[upload.content_type](data[:16]):
            return _refuse(upload, f"object content is not {upload.content_type}")
        image_key = bucket.image_key(upload.supplier_id, upload.upload_id)
        bucket.copy(key, image_key)
        result = {"image_key": image_key, "bytes": size}
    elif upload.kind == "shipments":
        result = ship(upload.supplier_id, data)
    else:
        result = _import_goods(upload, data)
    upload.update([Upload.status.set("processed"), Upload.result.set(result), Upload.processed_at.set(now_iso())])
    return result


def _import_goods(upload: Upload, data: bytes) -> dict:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return {"imported": 0, "existing": 0, "rows": 0, "errors": [{"line": 0, "reason": "file is not UTF-8"}]}
    parsed = parse_goods_csv(text)
    created, existing = [], []
    errors = list(parsed.errors)
    for lines, draft in parsed.drafts:
        try:
            created.append(goods.publish(upload.supplier_id, draft, f"supplier:{upload.supplier_id}").goods_id)
        except Conflict:
            existing.append(goods.goods_id_for(upload.supplier_id, draft.ref))
        except Unprocessable as exc:  # e.g. an image that is not one of this supplier's processed uploads
            errors.append({"line": lines[0], "reason": f"{exc.field or 'row'}: {exc.message}"})
    errors.sort(key=lambda e: e["line"])
    return {"imported": len(created), "existing": len(existing), "rows": parsed.rows, "errors": errors,
            "goods_ids": created + existing}

