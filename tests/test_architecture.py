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
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
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
    """The conventions (docs/design.md): a module that passes ~400 lines is two ideas (allow some slack)."""
    too_long = {str(p.relative_to(ROOT)): n for pkg in OURS for p in (ROOT / pkg).rglob("*.py")
                if (n := len(p.read_text().splitlines())) > 600}
    assert not too_long, too_long
