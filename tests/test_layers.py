"""The package's layering, read from its source: no import cycle between its parts, and no
import from a lower layer (families, roles, models, operators, data) into a higher one
(train, parallel, schedule, the command lines)."""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

from ligo.fileio import atomic_write, atomic_write_text

PACKAGE = Path(__file__).resolve().parents[1] / "ligo"
SUBPACKAGES = ("train", "data", "operators")  # one unit each
LOWER = {"ligo.families", "ligo.roles", "ligo.models", "ligo.operators", "ligo.data",
         "ligo.fileio", "ligo.progress", "ligo.distributed", "ligo.precision"}
HIGHER = {"ligo.train", "ligo.parallel", "ligo.schedule", "ligo.cli", "ligo.config",
          "ligo.pretrain", "ligo.grow_train", "ligo.grow_model", "ligo.glue", "ligo.lm_eval",
          "ligo.export", "ligo.plot"}


def _unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in SUBPACKAGES else module


def import_graph() -> dict[str, set[str]]:
    """unit -> the units it imports (at module level or inside functions). The package root
    (ligo/__init__.py, the public API) is left out: it may import anything."""
    graph = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                name = node.module
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                targets = [name] if name and name.startswith("ligo") else []
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("ligo")]
            for target in targets:
                if module != "ligo" and target != "ligo" and _unit(target) != _unit(module):
                    graph[_unit(module)].add(_unit(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found = []

    def visit(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                found.append(path[path.index(nxt):] + [nxt])
            elif len(path) < 20:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "ligo.train" in graph and "ligo.operators" in graph  # the walk found the package
    assert cycles(graph) == []


def test_no_lower_layer_imports_a_higher_one():
    graph = import_graph()
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if a in LOWER and b in HIGHER)
    assert upward == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"], ["b", "a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary left
    with atomic_write(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) == "0o644"
