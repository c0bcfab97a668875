"""The import graph of the project's packages flows one way (DESIGN.md): features -> models -> training -> analysis ->
serving -> the command line (hotspot.steps, hotspot.cli). No module imports a later stage, and no two modules import
each other, directly or round a loop; imports inside functions count (they are still dependencies), imports under
`if TYPE_CHECKING:` do not (they are for type checkers only). Every folder installs under the one `hotspot`
namespace (pyproject.toml, package-dir), and nothing imports a folder by its bare name."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from tests.conftest import REPO_ROOT

# the order data flows in; hotspot.steps and hotspot.cli are the command line, the last stage
STAGES = ("features", "models", "training", "analysis", "serving", "cli")
BARE = ("features", "models", "training", "analysis", "serving")  # folder names that must never be imported bare


def package_dirs(root: Path = REPO_ROOT) -> dict[str, str]:
    """Installed package -> folder, as pyproject.toml maps them (the same table the install uses)."""
    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def modules(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Installed module name -> file, for every module of every stage."""
    found = {}
    for package, folder in package_dirs(root).items():
        if stage_of(package) is None and package != "hotspot":
            continue  # package data (configs, the sample), not code
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            name = ".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)])
            found[name] = path
    return found


def stage_of(module: str) -> str | None:
    """The stage a module belongs to: hotspot.<stage>..., hotspot.steps/hotspot.cli -> cli; the root -> None."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "hotspot":
        return None
    return "cli" if parts[1] in ("steps", "cli") else parts[1] if parts[1] in STAGES else None


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
    """Imports of a later stage by an earlier one (the root package `hotspot` belongs to no stage)."""
    rank = {name: i for i, name in enumerate(STAGES)}
    pairs = []
    for a, targets in graph.items():
        for b in targets:
            sa, sb = stage_of(a), stage_of(b)
            if sa is not None and sb is not None and rank[sb] > rank[sa]:
                pairs.append((a, b))
    return sorted(pairs)


def bare_imports(files: list[Path]) -> list[str]:
    """`file:line` of every import of a stage folder by its bare name (`import features`, `from training.x ...`):
    they only work from the repository root and load a second copy of the module beside hotspot.features."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            if any(n.split(".")[0] in BARE for n in names):
                found.append(f"{path}:{node.lineno}")
    return found


def test_the_checks_find_a_cycle_and_an_import_against_the_flow():
    graph = {"hotspot.features.a": {"hotspot.features.b"}, "hotspot.features.b": {"hotspot.features.c"},
             "hotspot.features.c": {"hotspot.features.a"}, "hotspot.features.d": {"hotspot.serving.x"},
             "hotspot.serving.x": {"hotspot.features.d"}, "hotspot.training.t": {"hotspot.features.a"},
             "hotspot.analysis.y": {"hotspot.training.t", "hotspot"}, "hotspot.training.u": {"hotspot.analysis.y"},
             "hotspot.steps.z": {"hotspot.cli.w"}, "hotspot.serving.v": {"hotspot.steps.z"}}
    assert cycles(graph) == [["hotspot.features.a", "hotspot.features.b", "hotspot.features.c"],
                             ["hotspot.features.d", "hotspot.serving.x"]]
    assert against_the_flow(graph) == [("hotspot.features.d", "hotspot.serving.x"),
                                       ("hotspot.serving.v", "hotspot.steps.z"),
                                       ("hotspot.training.u", "hotspot.analysis.y")]


def test_every_stage_folder_installs_under_the_hotspot_namespace():
    dirs = package_dirs()
    assert all(package == "hotspot" or package.startswith("hotspot.") for package in dirs)
    assert {f"hotspot.{stage}" for stage in BARE} <= set(dirs)
    found = modules()
    assert "hotspot.models.gbm" in found and "hotspot.training.audit.run" in found and "hotspot.cli.common" in found
    assert not any(name.split(".")[-1] == "lightgbm" for name in found)  # no module shadows the library


def test_nothing_imports_a_stage_folder_by_its_bare_name(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom training.metrics import pai_at\nimport features.config as c\n")
    assert len(bare_imports([bad])) == 2  # the check finds them
    files = [p for p in REPO_ROOT.rglob("*.py") if not {".venv", "outputs", ".git", "build"} & set(p.parts)]
    assert len(files) > 100
    assert bare_imports(files) == []


def test_imports_flow_one_way_without_cycles():
    found = modules()
    graph = import_graph(found)
    assert len(found) > 60 and sum(map(len, graph.values())) > 200  # the whole project was read
    assert cycles(graph) == []
    assert against_the_flow(graph) == []


def test_the_family_table_and_the_names_a_config_may_use_agree():
    from hotspot.features.config import FAMILY_NAMES
    from hotspot.features.families import FAMILIES

    assert tuple(FAMILIES) == FAMILY_NAMES
    assert all(FAMILIES[name].name == name for name in FAMILY_NAMES)
