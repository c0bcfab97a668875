"""The import graph of the project's packages flows one way (DESIGN.md): features -> models -> training -> serving ->
hotspot (the command line). No module imports a later stage, and no two modules import each other, directly or
round a loop; imports inside functions count (they are still dependencies), imports under `if TYPE_CHECKING:` do
not (they are for type checkers only)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

STAGES = ("features", "models", "training", "serving", "hotspot")  # the order data flows in


def modules(root: Path = REPO_ROOT) -> dict[str, Path]:
    found = {}
    for stage in STAGES:
        for path in sorted((root / stage).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (a name imported from a package counts as its submodule when one
    exists, else as the package)."""

    def resolve(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in found.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_only(tree)
        targets = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets.update(resolve(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.update(resolve(f"{node.module}.{a.name}") or resolve(node.module) for a in node.names)
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def against_the_flow(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    stage = {name: i for i, name in enumerate(STAGES)}
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if stage[b.split(".")[0]] > stage[a.split(".")[0]])


def test_the_checks_find_a_cycle_and_an_import_against_the_flow():
    graph = {"features.a": {"features.b"}, "features.b": {"features.c"}, "features.c": {"features.a"},
             "features.d": {"serving.x"}, "serving.x": {"features.d"}, "training.t": {"features.a"}}
    assert cycles(graph) == [["features.a", "features.b", "features.c"], ["features.d", "serving.x"]]
    assert against_the_flow(graph) == [("features.d", "serving.x")]


def test_imports_flow_one_way_without_cycles():
    found = modules()
    graph = import_graph(found)
    assert len(found) > 60 and sum(map(len, graph.values())) > 200  # the whole project was read
    assert cycles(graph) == []
    assert against_the_flow(graph) == []


def test_the_family_table_and_the_names_a_config_may_use_agree():
    from features.config import FAMILY_NAMES
    from features.families import FAMILIES

    assert tuple(FAMILIES) == FAMILY_NAMES
    assert all(FAMILIES[name].name == name for name in FAMILY_NAMES)
