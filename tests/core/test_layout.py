"""`blip_core`'s layout holds: every module sits in a sub-package by role, imports point one way only (down the
table below, read from the source with `ast`, lazy imports included), no module imports another in a circle,
and each sub-package says in its docstring what belongs there. The table is the one in docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "blip_core"

# Sub-package -> the sub-packages it may import (besides itself). Lower layers first.
ALLOWED: dict[str, set[str]] = {
    "io": set(),
    "weights": set(),
    "config": {"io"},
    "checkpoints": {"io", "config", "weights"},
    "processing": {"io", "config"},
    "modeling": {"io", "config", "weights", "checkpoints"},
    "generation": {"io", "config", "modeling"},
    "training": {"io", "config", "checkpoints", "processing"},
    "tasks": {"io", "config", "weights", "checkpoints", "processing", "modeling", "generation"},
    "demo": {"io", "config", "processing", "training"},
    "bulk": {"io", "config", "processing", "modeling", "generation", "tasks"},
    "finetune": {"io", "config", "processing", "modeling", "tasks", "training", "bulk"},
    "cli": {"io", "config", "processing", "modeling", "generation", "tasks", "training", "demo", "bulk", "finetune"},
}
# What the other import packages may take from blip_core: never the applications (their `__init__` facades aside).
OUTSIDE_ALLOWED = {
    "blip_torch": {"io", "config", "weights", "checkpoints", "processing", "modeling", "generation", "training"},
    "blip_tf": {"io", "config", "weights", "checkpoints", "processing", "modeling", "generation", "training"},
    "blip_conversion": {"io", "config", "weights", "checkpoints", "processing", "modeling"},
    "blip_onnx": {"io", "config", "modeling", "generation"},
}
# Modules allowed at blip_core's top level.
TOP_LEVEL = {"__init__", "_compat"}  # the facade, and the 0.1 module paths it keeps importable


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every blip_core module `path` imports, anywhere in the file (lazy imports count), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "blip_core"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "blip_core":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub if is_module(sub) else node.module, node.lineno))
    return found


def package_of(module: str) -> str | None:
    """The sub-package of a blip_core module (None for the top-level facade `blip_core` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


CORE_FILES = sorted(CORE.rglob("*.py"))
GRAPH = {module_name(path): imported_modules(path) for path in CORE_FILES}


def test_every_module_is_in_a_sub_package_with_a_role():
    loose = [path.name for path in CORE.glob("*.py") if path.stem not in TOP_LEVEL]
    assert not loose, f"modules at blip_core's top level (put each in the sub-package of its role): {loose}"
    packages = {path.parent.name for path in CORE.glob("*/__init__.py")}
    assert packages == set(ALLOWED), f"sub-packages {sorted(packages)} vs the layering table {sorted(ALLOWED)}"
    for package in packages:
        doc = ast.get_docstring(ast.parse((CORE / package / "__init__.py").read_text())) or ""
        assert len(doc) > 150 and "import" in doc, f"blip_core/{package}/__init__.py must say what belongs there "
        "and what may import it"


def test_the_layering_table_has_no_cycle():
    order = topological(ALLOWED)
    assert order is not None, "ALLOWED itself has a cycle"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_imports_point_down(path):
    source = module_name(path)
    own = package_of(source)
    if own is None:
        return  # the facade re-exports the public names of every layer
    upward = []
    for target, line in GRAPH[source]:
        other = package_of(target)
        if other is None:
            upward.append(f"line {line}: imports the top-level blip_core (import the defining module instead)")
        elif other != own and other not in ALLOWED[own]:
            upward.append(f"line {line}: {own} -> {other} ({target})")
    assert not upward, f"{path.relative_to(ROOT)} imports against the layering:\n" + "\n".join(upward)


def test_no_module_imports_in_a_circle():
    edges = {module: {target for target, _ in targets} for module, targets in GRAPH.items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("package", sorted(OUTSIDE_ALLOWED))
def test_the_trees_and_conversion_import_no_application(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path == ROOT / package / "__init__.py":
            continue  # the facade: `blip_torch.pipeline` is `blip_core.pipeline` with the framework fixed
        for target, line in imported_modules(path):
            layer = package_of(target)
            if layer is not None and layer not in OUTSIDE_ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """The two rules themselves: an upward edge and a circle are found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert topological({"x": {"y"}, "y": {"x"}}) is None
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from blip_core.cli.main import main\n")
    assert imported_modules(bad) == [("blip_core.cli.main", 2)]
    assert "cli" not in ALLOWED["config"]


def topological(graph: dict[str, set[str]]) -> list[str] | None:
    order: list[str] = []
    remaining = {node: set(targets) for node, targets in graph.items()}
    while remaining:
        ready = sorted(node for node, targets in remaining.items() if not targets - set(order))
        if not ready:
            return None
        order += ready
        for node in ready:
            del remaining[node]
    return order


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target == node:
                continue
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None
