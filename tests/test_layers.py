"""edgekeras' import graph, read from the source (every import, lazy ones inside functions included): three layers,
each importing only its own and those below, and no circle. No module is imported here; this runs in a second.

    core      edgekeras.<CORE_MODULES>: errors, settings, modes, card, data, metrics, preprocess, ... (no TensorFlow)
    runtime   edgekeras.runtime.*: run and measure files (no TensorFlow; with core, what a device installs)
    above     compress, export, train, report, cli, android, the package's lazy facade (edgekeras/__init__.py)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edgekeras.runtime.device import CORE_MODULES, device_files

PACKAGE = Path(__file__).resolve().parents[1] / "edgekeras"
FORBIDDEN_BELOW = {"tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "click", "matplotlib",
                   "tf2onnx"}


def _name(f: Path) -> str:
    parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(f): f for f in PACKAGE.rglob("*.py") if "__pycache__" not in f.parts}


def _resolve(name: str) -> str | None:
    """The edgekeras module that `name` is or lies in (`edgekeras.card.ModelCard` -> `edgekeras.card`)."""
    while name not in MODULES:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


def imports(module: str) -> tuple[set[str], set[str]]:
    """(edgekeras modules, other top-level packages) that `module` imports anywhere in its source."""
    f = MODULES[module]
    package = module if f.name == "__init__.py" else module.rsplit(".", 1)[0]
    ours, others = set(), set()
    for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "edgekeras":
                others.add(target.split(".")[0])
                continue
            for alias in node.names:  # `from . import settings` names a module, `from .card import X` a name
                found = _resolve(f"{target}.{alias.name}") if f"{target}.{alias.name}" in MODULES else _resolve(target)
                if found:
                    ours.add(found)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "edgekeras":
                    found = _resolve(alias.name)
                    if found:
                        ours.add(found)
                else:
                    others.add(alias.name.split(".")[0])
    ours.discard(module)
    return ours, others


CORE = {f"edgekeras.{m}" for m in CORE_MODULES}


def layer(module: str) -> int:
    return 0 if module in CORE else 1 if module.startswith("edgekeras.runtime") else 2


def test_the_layers_are_declared_modules_that_exist():
    assert CORE <= set(MODULES), CORE - set(MODULES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) < 2))
def test_a_lower_layer_imports_nothing_above_it_and_no_tensorflow(module):
    ours, others = imports(module)
    above = sorted(m for m in ours if layer(m) > layer(module))
    assert not above, f"{module} ({['core', 'runtime'][layer(module)]}) imports {above}"
    assert not others & FORBIDDEN_BELOW, f"{module} imports {others & FORBIDDEN_BELOW}"


def test_no_circle_in_the_import_graph():
    graph = {m: imports(m)[0] for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_device_install_is_the_two_lower_layers():
    shipped = {_name(PACKAGE.parent / n) for n, _ in device_files() if n.endswith(".py")}
    assert shipped == {m for m in MODULES if layer(m) < 2} | {"edgekeras"}
