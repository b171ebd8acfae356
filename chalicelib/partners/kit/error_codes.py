"""Every error code the code can answer, read from the source itself (so the guide's list cannot drift).

A code is the first argument (or ``code=``) of a ``DomainError`` subclass raised anywhere in ``chalicelib``,
or the ``code=`` of a rate limit (``ratelimit.hit``); its HTTP status is the class's ``status``, followed
through the class hierarchy as written in the source. Codes computed at run time (an f-string) are left
out; what Chalice itself answers (``web.chalice_error_to_contract``) and ``internal_error`` are added.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # chalicelib
BASE = "DomainError"
# Answered outside any raise: Chalice's own errors turned into the contract's shape, and the catch-all.
FRAMEWORK = {"bad_request": (400, "chalice"), "method_not_allowed_error": (405, "chalice"),
             "unsupported_media_type": (415, "chalice"), "internal_error": (500, "core/web")}
# Areas only ops and suppliers reach: their codes are not a channel's concern.
NOT_CHANNEL_FACING = ("supply/",)


@dataclass(frozen=True)
class ErrorCode:
    code: str
    statuses: tuple[int, ...]
    where: tuple[str, ...]  # the modules that raise it (``area/module``)


def _sources() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        where = path.relative_to(ROOT).with_suffix("").as_posix()
        if where.startswith("partners/kit/"):
            continue
        found.append((where, ast.parse(path.read_text(encoding="utf-8"))))
    return found


def _statuses(trees: list[tuple[str, ast.Module]]) -> dict[str, int]:
    """Each DomainError subclass (by name) → its status, inherited where it sets none."""
    parents: dict[str, str] = {}
    own: dict[str, int] = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or not node.bases:
                continue
            base = node.bases[0]
            parents[node.name] = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            for item in node.body:
                if (isinstance(item, (ast.Assign, ast.AnnAssign)) and isinstance(item.value, ast.Constant)
                        and any(isinstance(t, ast.Name) and t.id == "status"
                                for t in (item.targets if isinstance(item, ast.Assign) else [item.target]))):
                    own[node.name] = item.value.value
    statuses: dict[str, int] = {}
    for name in parents:
        chain, current = [], name
        while current != BASE and current in parents and current not in chain:  # up to DomainError
            chain.append(current)
            current = parents[current]
        if current == BASE:
            statuses[name] = next((own[c] for c in chain if c in own), 400)
    return statuses


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _code_of(node: ast.Call) -> str | None:
    for keyword in node.keywords:
        if keyword.arg == "code" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
            return keyword.value.value
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


@cache
def catalog() -> tuple[ErrorCode, ...]:
    """Every code, sorted by status then code."""
    trees = _sources()
    statuses = _statuses(trees)
    found: dict[str, tuple[set[int], set[str]]] = {code: ({status}, {where})
                                                   for code, (status, where) in FRAMEWORK.items()}
    for where, tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if name in statuses:
                code = _code_of(node)
                status = statuses[name]
            elif name == "hit" and where != "core/ratelimit":  # ratelimit.hit(..., code=...): RateLimited
                code = next((k.value.value for k in node.keywords if k.arg == "code"
                             and isinstance(k.value, ast.Constant)), "rate_limited")
                status = statuses.get("RateLimited", 429)
            else:
                continue
            if code and code.replace("_", "").isalnum() and code.islower():
                entry = found.setdefault(code, (set(), set()))
                entry[0].add(status)
                entry[1].add(where)
    return tuple(sorted((ErrorCode(code, tuple(sorted(s)), tuple(sorted(w))) for code, (s, w) in found.items()),
                        key=lambda e: (e.statuses[0], e.code)))


def channel_facing() -> tuple[ErrorCode, ...]:
    """The codes a channel, its server or its members can meet (not only raised by ops/supplier areas)."""
    return tuple(e for e in catalog() if not all(w.startswith(NOT_CHANNEL_FACING) for w in e.where))
