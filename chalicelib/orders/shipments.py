"""A supplier's shipments file (``parcel_id,carrier,tracking_no`` rows, uploaded through a signed link:
``supply.imports``) applied to its own parcels, row by row."""
from __future__ import annotations

import csv
import io
import re

from chalicelib.core.errors import DomainError
from chalicelib.orders import parcels

SHIPMENT_COLUMNS = ("parcel_id", "carrier", "tracking_no")
SHIPMENTS_MAX_ROWS = 2000  # applied one by one within one invocation of the upload handler
PARCEL_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def import_rows(supplier_id: str, data: bytes) -> dict:
    """Rows ``parcel_id,carrier,tracking_no``: each applied (``parcels.ship``, the supplier's own parcels only)
    or refused with its line and reason. A parcel ships once: a row for a parcel already shipped (the same
    file imported again, a repeated row) is refused with ``parcel_already_shipped``."""
    from pydantic import ValidationError

    from chalicelib.core.schemas import Shipment

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return {"shipped": 0, "rows": 0, "errors": [{"line": 0, "reason": "file is not UTF-8"}], "parcel_ids": []}
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in SHIPMENT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        return {"shipped": 0, "rows": 0, "errors": [{"line": 1, "reason": f"missing columns: {', '.join(missing)}"}],
                "parcel_ids": []}
    shipped: list[str] = []
    errors: list[dict] = []
    rows = 0
    for row in reader:
        rows += 1
        line = reader.line_num
        if rows > SHIPMENTS_MAX_ROWS:
            errors.append({"line": line, "reason": f"at most {SHIPMENTS_MAX_ROWS} rows per file; the rest not read"})
            break
        parcel_id = (row.get("parcel_id") or "").strip()
        if not PARCEL_ID.match(parcel_id):
            errors.append({"line": line, "reason": "parcel_id: not a parcel id"})
            continue
        try:
            shipment = Shipment.model_validate({"carrier": row.get("carrier") or "",
                                                "tracking_no": row.get("tracking_no") or ""})
        except ValidationError as exc:
            err = exc.errors()[0]
            errors.append({"line": line, "reason": f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"})
            continue
        try:
            parcels.ship(supplier_id, parcel_id, shipment.carrier, shipment.tracking_no)
        except DomainError as refused:
            errors.append({"line": line, "reason": f"{refused.code}: {refused.message}"})
            continue
        shipped.append(parcel_id)
    return {"shipped": len(shipped), "rows": rows, "errors": errors, "parcel_ids": shipped}
