"""Every error code the code can answer, read from the source itself (so the guide's list cannot drift).

A code is the first argument (or ``code=``) of a ``DomainError`` subclass raised anywhere in ``chalicelib`` (a literal,
or every value of a module's table of codes it is read from), or
the ``code`` given to (or defaulted by) a function that raises with the code it is given (``ratelimit.hit``,
``entry.check_fields``); its HTTP status is the class's ``status``, followed through the class hierarchy as
written in the source. Codes computed at run time (an f-string) are left
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


def _tables(tree: ast.Module) -> dict[str, list[str]]:
    """A module's dicts of codes (``REFUSAL_CODES = {STATE: "parcel_not_shipped", ...}``): name → the values."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name) and node.value.values \
                and all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.value.values):
            found[node.targets[0].id] = [v.value for v in node.value.values]
    return found


def _code_of(node: ast.Call, tables: dict[str, list[str]]) -> list[str]:
    """The code(s) an error is built with: a literal (first or ``code=``), or any value of a table it is read from."""
    given = next((k.value for k in node.keywords if k.arg == "code"), node.args[0] if node.args else None)
    if isinstance(given, ast.Constant) and isinstance(given.value, str):
        return [given.value]
    if isinstance(given, ast.Subscript) and isinstance(given.value, ast.Name):
        return tables.get(given.value.id, [])
    return []


@dataclass(frozen=True)
class _Coder:
    """A function that raises (or builds) an error with the code it is given."""

    position: int  # of its ``code`` argument at a call site (``self`` not counted)
    default: str | None
    status: int


def _coders(trees: list[tuple[str, ast.Module]], statuses: dict[str, int]) -> dict[str, _Coder]:
    """Functions with a ``code`` parameter that they pass on to an error class as its code (``ratelimit.hit``,
    ``entry.check_fields(..., error=BadRequest, code=...)``, ``payment_auth._wrong``): the status from an ``error=``
    default, or from the class the function builds with ``code``."""
    found: dict[str, _Coder] = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            names = [a.arg for a in node.args.args]
            if "code" not in names:
                continue
            defaults = dict(zip(names[::-1], node.args.defaults[::-1]))
            classes = [d.id for d in defaults.values() if isinstance(d, ast.Name) and d.id in statuses]
            classes += [_called(c) for c in ast.walk(node) if isinstance(c, ast.Call) and _called(c) in statuses
                        and c.args and isinstance(c.args[0], ast.Name) and c.args[0].id == "code"]
            if classes:
                default = defaults.get("code")
                text = default.value if isinstance(default, ast.Constant) and isinstance(default.value, str) else None
                bound = 1 if names[0] in ("self", "cls") else 0
                found[node.name] = _Coder(names.index("code") - bound, text, statuses[classes[0]])
    return found


def _given(node: ast.Call, coder: _Coder) -> str | None:
    """The code a call passes to a coder: ``code=``, positionally, or its default."""
    for keyword in node.keywords:
        if keyword.arg == "code":
            value = keyword.value
            return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None
    if coder.position < len(node.args):
        value = node.args[coder.position]
        return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None
    return coder.default


@cache
def catalog() -> tuple[ErrorCode, ...]:
    """Every code, sorted by status then code."""
    trees = _sources()
    statuses = _statuses(trees)
    coders = _coders(trees, statuses)
    found: dict[str, tuple[set[int], set[str]]] = {code: ({status}, {where})
                                                   for code, (status, where) in FRAMEWORK.items()}

    def add(code: str | None, status: int, where: str) -> None:
        if code and code.replace("_", "").isalnum() and code.islower():
            entry = found.setdefault(code, (set(), set()))
            entry[0].add(status)
            entry[1].add(where)

    for where, tree in trees:
        tables = _tables(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in statuses:  # super().__init__("code", ...) in a class
                for call in ast.walk(node):
                    if (isinstance(call, ast.Call) and _called(call) == "__init__"
                            and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Call)
                            and _called(call.func.value) == "super"):
                        for code in _code_of(call, tables):
                            add(code, statuses[node.name], where)
            if not isinstance(node, ast.Call):
                continue
            name = _called(node)
            if name in statuses:
                for code in _code_of(node, tables):
                    add(code, statuses[name], where)
            elif name in coders:
                add(_given(node, coders[name]), coders[name].status, where)
    for name, coder in coders.items():  # a coder's own default code is one it can answer
        if coder.default:
            add(coder.default, coder.status, next(w for w, t in trees if any(
                isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(t))))
    return tuple(sorted((ErrorCode(code, tuple(sorted(s)), tuple(sorted(w))) for code, (s, w) in found.items()),
                        key=lambda e: (e.statuses[0], e.code)))


def channel_facing() -> tuple[ErrorCode, ...]:
    """The codes a channel, its server or its members can meet (not only raised by ops/supplier areas)."""
    return tuple(e for e in catalog() if not all(w.startswith(NOT_CHANNEL_FACING) for w in e.where))
