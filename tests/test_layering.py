"""The packages' import direction (docs/architecture.md): core below every app, then members,
subscriptions, monitoring, and portal on top. Read from the source with `ast`, so an import
added anywhere, at module level or inside a function, fails here before it tangles the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("core", "members", "subscriptions", "monitoring", "portal")
# What each package may import of ours, itself aside.
ALLOWED = {
    "core": set(),
    "members": {"core"},
    "subscriptions": {"core", "members"},
    "monitoring": {"core", "members", "subscriptions"},
    "portal": {"core", "members", "subscriptions", "monitoring"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages of ours that the module at `path` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in OURS)
    return found


def modules(package: str) -> list[Path]:
    return sorted(path for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts)


@pytest.mark.parametrize("package", OURS)
def test_each_package_imports_only_the_layers_below_it(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package] - {package})
        for path in modules(package)
    }
    assert {module: names for module, names in wrong.items() if names} == {}


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test above cannot pass by reading nothing: an app importing `portal`, or `core`
    importing an app, inside a function too, is found."""
    module = tmp_path / "module.py"
    module.write_text(
        "import os\nfrom core.cache import MEMBER\n\ndef f():\n"
        "    from portal import views\n    import members.models\n"
    )
    assert imported_packages(module) == {"core", "portal", "members"}


def test_every_package_has_modules():
    assert all(modules(package) for package in OURS)
