"""The audit trail: who changed what, when, from which value to which."""
from __future__ import annotations

import json
import uuid
from typing import Any

from pynamodb.transactions import TransactWrite

from chalicelib.core.clock import now_iso
from chalicelib.core.models import Audit
from chalicelib.core.tx import LabelledTransaction


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def row(entity: str, actor: str, action: str, field: str | None = None, old: Any = None, new: Any = None) -> Audit:
    return Audit(
        entity, f"{now_iso()}#{uuid.uuid4().hex[:8]}",
        actor=actor, action=action, field=field, old=_text(old), new=_text(new),
    )


def add(tx: TransactWrite | LabelledTransaction, entity: str, actor: str, action: str,
        field: str | None = None, old: Any = None, new: Any = None, label: str = "audit") -> None:
    """The one way an audit row is written with a change: in the caller's own transaction (a labelled one names
    it ``label``), so the row exists exactly when the change does."""
    item = row(entity, actor, action, field, old, new)
    if isinstance(tx, LabelledTransaction):
        tx.put(label, item)
    else:
        tx.save(item)


PLATFORM = "platform"


def public_actor(actor: str | None) -> str | None:
    """Who a supplier is shown as having acted: itself as recorded, anyone on our side as "platform".

    Ops actors are IAM ARNs (our account id and staff user names), which are never a supplier's business."""
    if actor is None or actor == "self" or actor.startswith("supplier:"):
        return actor
    return PLATFORM


def for_supplier(rows: list[dict]) -> list[dict]:
    """An audit trail as a supplier may see it: the same rows, ops actors replaced by "platform"."""
    return [dict(r, actor=public_actor(r["actor"])) for r in rows]


def history(entity: str, limit: int = 200) -> list[dict]:
    return [
        {"at": a.at.split("#")[0], "actor": a.actor, "action": a.action, "field": a.field,
         "old": a.old, "new": a.new}
        for a in Audit.query(entity, scan_index_forward=True, limit=limit)
    ]
