"""docs/design.md's import rules: what each package may import of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"corpus", "pipelines", "manifests", "mixer", "proxy"}
ALLOWED = {
    "corpus": set(),
    "pipelines": {"corpus", "manifests"},
    "manifests": {"corpus"},
    "mixer": {"corpus", "manifests"},
    "proxy": {"corpus", "manifests", "mixer"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    for node in ast.walk(tree):  # importlib.import_module("pkg.mod") with a literal
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_rules(package):
    folder = ROOT / package
    if not folder.exists():
        pytest.skip(f"{package}/ not present")
    bad = {}
    for path in folder.rglob("*.py"):
        extra = imported_packages(path) - ALLOWED[package] - {package}
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"imports that docs/design.md forbids: {bad}"


def test_modules_stay_small():
    """The conventions (docs/design.md): a module that passes ~400 lines is two ideas."""
    too_long = {
        str(p.relative_to(ROOT)): n
        for pkg in OURS
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not too_long, too_long


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported: the module body and its if/try/with blocks
    (not functions, whose imports run when called, nor `if TYPE_CHECKING:` blocks, which never run)."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                todo.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)
    return found


def module_import_graph() -> dict[str, set[str]]:
    """{module: modules of ours it imports at import time}, for every module of every package of ours.

    `from pkg import name` points at the module pkg.name when there is one, else at pkg; importing
    pkg.mod is an edge to pkg.mod only (its parent packages are already being imported when a cycle closes).
    """
    modules = {_module_name(p): p for pkg in OURS if (ROOT / pkg).exists() for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in _top_level_imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
                continue
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                edges.add(target if target in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_import_graph_has_no_cycles():
    """Our modules import each other at the top (CONVENTIONS.md), so a circle would show here: none may exist."""
    graph = module_import_graph()
    assert "proxy.merge" in graph and "proxy.weights" in graph["proxy.merge"]  # the graph sees our imports
    cycles = import_cycles(graph)
    assert not cycles, f"import cycles between our modules (module-level imports): {cycles}"


def test_proxy_imports_its_own_modules_at_the_top():
    """A function-level import of our own modules hides a circle from the test above; proxy/ has none."""
    late = {}
    for path in (ROOT / "proxy").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        top = {id(n) for n in _top_level_imports(tree)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if getattr(node, "level", 0) or any(n.split(".")[0] in OURS for n in names):
                    late.setdefault(str(path.relative_to(ROOT)), []).append(node.lineno)
    assert not late, f"function-level imports of our own modules (import them at the top): {late}"
