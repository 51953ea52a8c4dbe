"""House rules read from the source (no module is imported): every attribute an object has is declared where it is
made, and compress' functions stay short enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgekeras"
FILES = sorted(f for f in PACKAGE.rglob("*.py") if "__pycache__" not in f.parts)
MAKERS = ("__init__", "__post_init__")


def _self_attributes(fn: ast.FunctionDef) -> set[str]:
    found = set()
    for node in ast.walk(fn):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for x in ast.walk(target):
                    if isinstance(x, ast.Attribute) and isinstance(x.value, ast.Name) and x.value.id == "self":
                        found.add(x.attr)
    return found


def _declared(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> set[str]:
    """Attributes a class declares: class-level names (dataclass fields among them), what its __init__ sets, and
    the same for its base classes in the module."""
    names = set()
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.FunctionDef) and node.name in MAKERS:
            names |= _self_attributes(node)
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes and classes[base.id] is not cls:
            names |= _declared(classes[base.id], classes)
    return names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_attribute_is_set_that_the_class_does_not_declare(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    problems = []
    for cls in classes.values():
        declared = _declared(cls, classes)
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.name not in MAKERS:
                for name in sorted(_self_attributes(fn) - declared):
                    problems.append(f"{cls.name}.{fn.name} sets self.{name}, which {cls.name}.__init__ does not")
    assert not problems, "\n".join(problems)


def _code_lines(fn: ast.FunctionDef) -> int:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    return fn.end_lineno - body[0].lineno + 1 if body else 0


def test_compress_functions_fit_on_a_screen():
    long = []
    for path in sorted((PACKAGE / "compress").glob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and _code_lines(fn) > 80:
                long.append(f"{path.name}: {fn.name} ({_code_lines(fn)} lines)")
    assert not long, long
