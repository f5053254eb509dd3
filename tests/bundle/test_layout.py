"""The package layout of scripts/: one package per layer, imports only downwards, no circle, each module importable alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundle_cli import BUNDLE_ROOT

SCRIPTS = BUNDLE_ROOT / "scripts"
LAYERS = {
    "bundle": 0,
    "data": 0,
    "networks": 1,
    "losses": 1,
    "metrics": 1,
    "transforms": 1,
    "phantom": 1,
    "engines": 2,
    "handlers": 3,
    "inference": 4,
    "prepare": 4,
    "evaluation": 5,
    "benchmarks": 6,
}
"""Rank of each package of scripts/: a module imports its own package or packages of a lower rank only."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(BUNDLE_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(SCRIPTS.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """The scripts.* modules that ``name`` imports (relative imports resolved), at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("scripts")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("scripts"):
                modules = _modules()
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return found - {name}


def test_every_module_lives_in_a_layer_package():
    top_level = sorted(p.name for p in SCRIPTS.iterdir() if p.suffix == ".py" and p.name != "__init__.py")
    assert top_level == [], f"modules outside any layer package: {top_level}"
    packages = {p.name for p in SCRIPTS.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == set(LAYERS), f"packages without a layer rank (or ranks without a package): {packages ^ set(LAYERS)}"


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for name, path in _modules().items():
        if name == "scripts":
            continue
        rank = LAYERS[name.split(".")[1]]
        for imported in _imports(name, path):
            target = imported.split(".")
            if len(target) > 1 and LAYERS[target[1]] > rank:
                upward.append(f"{name} -> {imported}")
    assert upward == []


def test_there_is_no_import_circle():
    graph = {name: {i for i in _imports(name, path) if i in _modules()} for name, path in _modules().items()}
    # a package's __init__ importing its own modules is how a package exports them, not a circle
    edges = {a: {b for b in targets if not (a == b.rpartition(".")[0] and (SCRIPTS / "/".join(a.split(".")[1:]) / "__init__.py").exists())}
             for a, targets in graph.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt):] + [node, nxt] if nxt in stack else [node, nxt])
                return True
            if nxt not in state and visit(nxt, stack + [node]):
                return True
        state[node] = 2
        return False

    assert not any(visit(n, []) for n in sorted(edges) if n not in state), f"import circle: {' -> '.join(cycle)}"


def test_every_module_imports_on_its_own():
    """Each module imported with no other scripts module loaded before it (an import circle fails here)."""
    code = (
        "import importlib, sys\n"
        f"names = {sorted(_modules())!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'scripts' or m.startswith('scripts.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


@pytest.mark.parametrize("helper", ["def case_name(", "def predictive_entropy(", "def read_datalist(", "BUNDLE_ROOT = "])
def test_each_helper_is_defined_once(helper):
    defined = [str(p.relative_to(BUNDLE_ROOT)) for p in SCRIPTS.rglob("*.py") if helper in p.read_text()]
    assert len(defined) == 1, defined
