"""The import order of the code: no circle between files, and areas on floors that import only downwards.

Pure: the sources are read with ``ast`` (every import, at the top of a file or inside a function), nothing is run.
Files are the nodes; the folders of ``chalicelib/`` are the areas, each on a floor of ``FLOORS``. A file may import files of
its own area or of a lower floor; an import of a higher floor is refused unless ``UPWARD`` names it, with why. Both
lists only shrink: an entry whose import is gone fails too, so it is taken off the list with the change that ends it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Ground first. ``core`` imports no area; ``callers`` (who is calling) stands above every area it asks; ``routes``
# (each area's HTTP door) above ``callers``; ``tables`` (the list of every area's tables) above all areas; ``app.py``
# on top. The README's layout section says the same.
FLOORS = ("core", "supply", "channels", "billing", "partners", "members", "orders", "sales", "checkout",
          "settlement", "callers", "routes", "tables", "app")

# Imports from a lower floor to a higher one that stay for now, each with why (file → file, as module names).
UPWARD: dict[tuple[str, str], str] = {
    # Refunds give points and quota back: wallets, quotas and the per-member cap are checkout's.
    ("chalicelib.orders.refunds", "chalicelib.checkout.quotas"): "a cancel gives the quota back",
    ("chalicelib.orders.refunds", "chalicelib.checkout.models"): "Quota, Wallet, MemberRedemption given back",
    # A channel's status and re-pricing move its quota shards in the same transaction (quotas.current, reprice).
    ("chalicelib.channels.channels", "chalicelib.checkout.quotas"): "a channel's status and period move its quota",
    ("chalicelib.channels.channels", "chalicelib.checkout.models"): "Quota shards written with the channel",
    ("chalicelib.channels.pools", "chalicelib.checkout.quotas"): "a sub-pool change re-prices the quota shards",
    # Parcel events are booked for settlement in the same transaction as the event.
    ("chalicelib.orders.parcels", "chalicelib.settlement.books"): "book entries written with the parcel event",
    ("chalicelib.orders.refunds", "chalicelib.settlement.books"): "book entries written with the refund",
    ("chalicelib.orders.refunds", "chalicelib.settlement.statements"): "who bears a refund after shipment",
    # A cancelled flash-sale unit goes back to its sale's shards in the cancel's transaction.
    ("chalicelib.orders.refunds", "chalicelib.sales.offers"): "a cancel gives a sale's units back to its shards",
}

# Circles between files that stay for now: none. A new one fails the test below.
CIRCLES: list[frozenset[str]] = []


def modules(*places: str) -> dict[str, Path]:
    """Module name → file, for ``app.py`` and every ``.py`` under the given folders."""
    found = {}
    for place in places:
        path = ROOT / place
        for file in [path] if path.suffix == ".py" else sorted(path.rglob("*.py")):
            name = ".".join(file.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = file
    return found


def imports(source: str, known: set[str]) -> set[str]:
    """The known modules a source imports: ``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                      for a in node.names}
    return found & known


def graph(*places: str) -> dict[str, set[str]]:
    files = modules(*places)
    return {name: imports(file.read_text(), set(files)) - {name} for name, file in files.items()}


def circles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Every set of two or more files that import each other round a loop (Tarjan's strongly connected parts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:  # iterative: a deep import chain must not hit the recursion limit
        work = [(node, iter(sorted(edges.get(node, ()))))]
        index[node] = low[node] = len(index)
        stack.append(node)
        while work:
            current, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    work.append((target, iter(sorted(edges.get(target, ())))))
                    break
                if target in stack:
                    low[current] = min(low[current], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    part = set()
                    while True:
                        member = stack.pop()
                        part.add(member)
                        if member == current:
                            break
                    if len(part) > 1:
                        found.append(frozenset(part))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def area(module: str) -> str | None:
    """The floor's name a module stands on (None: the package face ``chalicelib`` itself)."""
    parts = module.split(".")
    if parts == ["app"]:
        return "app"
    if parts == ["chalicelib", "tables"]:
        return "tables"
    return parts[1] if len(parts) > 2 else None


def upward(edges: dict[str, set[str]], floors: tuple[str, ...]) -> set[tuple[str, str]]:
    """Every import from a file on a lower floor to a file on a higher one."""
    rank = {name: i for i, name in enumerate(floors)}
    return {(a, b) for a, targets in edges.items() for b in targets
            if area(a) in rank and area(b) in rank and rank[area(a)] < rank[area(b)]}


@pytest.fixture(scope="module")
def code() -> dict[str, set[str]]:
    return graph("app.py", "chalicelib")


def test_every_area_has_a_floor(code: dict[str, set[str]]) -> None:
    areas = {area(m) for m in code} - {None}
    assert areas == set(FLOORS), f"areas without a floor: {areas - set(FLOORS)}; floors without an area: " \
                                 f"{set(FLOORS) - areas}"


def test_core_imports_no_area(code: dict[str, set[str]]) -> None:
    """The ground floor stands on nothing: core imports only core (and libraries)."""
    assert {(a, b) for a, targets in code.items() if area(a) == "core" for b in targets if area(b) != "core"} == set()


def test_no_import_runs_up_beyond_the_declared_ones(code: dict[str, set[str]]) -> None:
    found = upward(code, FLOORS)
    assert found - set(UPWARD) == set(), "imports from a lower floor to a higher one: move the name down, or the " \
                                         "importer up"
    assert set(UPWARD) - found == set(), "declared upward imports that are gone: take them off UPWARD"


def test_no_circle_beyond_the_declared_ones() -> None:
    """Files that import each other round a loop, in the app and in the local tools and infra alike."""
    found = set(circles(graph("app.py", "chalicelib", "tools", "infra")))
    assert found - set(CIRCLES) == set(), "files that import each other round a loop"
    assert set(CIRCLES) - found == set(), "declared circles that are gone: take them off CIRCLES"


def test_the_checks_see_a_circle_and_an_upward_import() -> None:
    """The two rules on a made-up graph: a loop of three files is one circle (a file alone is none), and only the
    import from the lower floor to the higher one runs up."""
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(loop) == [frozenset({"a", "b", "c"})]
    assert circles({"a": {"b"}, "b": set()}) == []
    edges = {"chalicelib.core.x": {"chalicelib.orders.y"}, "chalicelib.orders.y": {"chalicelib.core.z"},
             "chalicelib.routes.orders": {"chalicelib.callers.callers"}}
    assert upward(edges, FLOORS) == {("chalicelib.core.x", "chalicelib.orders.y")}


def test_imports_are_read_inside_functions_and_from_packages() -> None:
    known = {"chalicelib.core", "chalicelib.core.tx", "chalicelib.orders.parcels"}
    source = "from chalicelib.core import tx\n\ndef f():\n    from chalicelib.orders import parcels\n"
    assert imports(source, known) == {"chalicelib.core.tx", "chalicelib.orders.parcels"}
