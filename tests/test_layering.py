"""The import rule of docs/architecture.md, checked on the source so the picture cannot drift."""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "hepflow")

#: package → the hepflow packages it must never import (imports inside functions included)
FORBIDDEN = {
    **{low: {"runs", "training", "evaluation", "studies", "serving", "cli"}
       for low in ("data", "ops", "layers", "models", "reco", "physics", "datasets", "testing", "errors", "io")},
    "ops": {"reco", "runs", "training", "evaluation", "studies", "serving", "cli"},  # reco composes ops
    "runs": {"training", "evaluation", "studies", "serving", "cli"},
    "training": {"evaluation", "studies", "serving", "cli"},
    "evaluation": {"training", "studies", "serving", "cli"},
    "serving": {"training", "evaluation", "studies", "cli"},
    "studies": {"serving", "cli"},
}


def _package(path: str) -> str:
    rel = os.path.relpath(path, ROOT)
    head = rel.split(os.sep)[0]
    return head[:-3] if head.endswith(".py") else head


def _imported(tree: ast.AST) -> set[str]:
    """The hepflow packages a module imports, and ``tools`` if it reaches for the benchmarks."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "hepflow" else [])
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "hepflow" and len(parts) > 1:
                out.add(parts[1])
            elif parts[0] == "tools":
                out.add("tools")
    return out


def _modules():
    for here, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(here, f)


def test_every_package_has_a_rule():
    packages = {_package(p) for p in _modules()} - {"__init__"}
    assert packages - set(FORBIDDEN) == {"cli"}, "give a new package its line in FORBIDDEN and docs/architecture.md"


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: os.path.relpath(p, ROOT))
def test_imports_follow_the_layering(path):
    pkg = _package(path)
    with open(path) as f:
        imported = _imported(ast.parse(f.read()))
    assert "tools" not in imported, f"{path} imports tools/ (benchmarks only)"
    bad = imported & FORBIDDEN.get(pkg, set())
    assert not bad, f"hepflow.{pkg} must not import {sorted(bad)} ({os.path.relpath(path, ROOT)})"


def test_the_rule_catches_a_violation():
    tree = ast.parse("def f():\n    from hepflow.evaluation.report import tagger_report\nfrom hepflow import training\n")
    assert _imported(tree) == {"evaluation", "training"}


_WHY = ("# optional extra", "-- optional extra", "# start-up", "# circular")


@pytest.mark.parametrize("path", [p for p in _modules() if _package(p) != "cli"], ids=lambda p: os.path.relpath(p, ROOT))
def test_imports_inside_functions_say_why(path):
    """Imports sit at module top unless an optional extra, a measured start-up cost or a cycle needs them
    inside a function, and the line says which (the CLI imports lazily throughout, for ``--help``)."""
    with open(path) as f:
        source = f.read()
    lines = source.splitlines()
    bare = []
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not any(w in lines[node.lineno - 1] for w in _WHY):
                    bare.append(f"{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bare, f"{os.path.relpath(path, ROOT)}: move to the top or say why: {sorted(set(bare))}"
