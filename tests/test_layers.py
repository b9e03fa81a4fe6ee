"""ftlib's subpackages import each other one way only: no circles, and no package imports one above its own.

The layers are the subpackages, bottom to top (a module may import its own package or any below, never one above):

0. ``ftlib.core``: files, the methods and LoRA presets, training config, run records, tasks, devices, progress
   lines and the hosted-notebook setup; what every other part stands on;
1. ``ftlib.data``: records and tokenization, the curation pipeline, injected flaws and the sample generators;
2. ``ftlib.engine``: base models, memory estimates, the GPU plan and run profiles, generation, training, adapters
   and export;
3. ``ftlib.measure``: scoring and statistics on the engine's results: evaluation, intervals, human review,
   forgetting, drift, inference cost and the registry of runs;
4. ``ftlib.lessons``: the per-lesson glue the notebooks call (lesson 01's choice, 06's sweeps, 07's steps), their
   plots and computed sentences;
5. ``ftlib.course``: the front ends and course tooling (command line, curriculum runner, HTML report, publishing
   and measured run times), which nothing inside ftlib imports; ``ftlib/__main__.py`` calls the command line.

The graph is read from the source with ``ast``, not by importing: every ``import ftlib.x.y`` and
``from ftlib.x[.y] import z`` counts as an edge, at module level and inside functions alike, since a
function-level import is a real dependency that only runs later. For the layers, imports under
``if TYPE_CHECKING:`` are left out (they never run, they only name types); for circles they count: two modules
that name each other's types are one concern split in two.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ftlib"
LAYERS = ("core", "data", "engine", "measure", "lessons", "course")
LAYER_OF = {package: layer for layer, package in enumerate(LAYERS)}
MODULES = sorted(f"{path.parent.name}.{path.stem}" for path in PACKAGE.glob("*/*.py") if path.stem != "__init__")


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imported_modules(node: ast.AST) -> list[str]:
    """The ftlib modules (``package.module``) one import statement names."""
    if isinstance(node, ast.Import):
        return [
            ".".join(a.name.split(".")[1:3])
            for a in node.names
            if a.name.count(".") >= 2 and a.name.startswith("ftlib.")
        ]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        parts = node.module.split(".")
        if parts[0] != "ftlib" or len(parts) == 1:
            return []
        if len(parts) > 2:
            return [f"{parts[1]}.{parts[2]}"]
        return [f"{parts[1]}.{a.name}" for a in node.names if f"{parts[1]}.{a.name}" in MODULES]
    return []


def import_graph(type_only: bool = False) -> dict[str, set[str]]:
    """module -> the ftlib modules it imports anywhere in its source; under ``if TYPE_CHECKING:`` only when
    ``type_only``."""
    graph = {}
    for module in MODULES:
        tree = ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
        skipped = (
            set()
            if type_only
            else {
                id(inner)
                for block in ast.walk(tree)
                if _is_type_checking_block(block)
                for statement in block.body
                for inner in ast.walk(statement)
            }
        )
        graph[module] = {
            target
            for node in ast.walk(tree)
            if id(node) not in skipped
            for target in _imported_modules(node)
            if target != module
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None; depth-first search with a path stack."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def _layer(module: str) -> int:
    return LAYER_OF[module.split(".")[0]]


@pytest.mark.unit
def test_the_graph_sees_module_and_function_level_imports():
    graph = import_graph()
    assert "core.tasks" in graph["data.records"]  # module level: from ftlib.core.tasks import Task
    assert "engine.train" in graph["course.cli"]  # inside functions only
    assert "engine.models" in graph["engine.memory"]  # from ftlib.engine import models, inside a function


@pytest.mark.unit
def test_find_cycle_reports_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.unit
def test_every_module_lives_in_a_layer_and_the_package_root_holds_no_code():
    assert sorted({module.split(".")[0] for module in MODULES} - set(LAYERS)) == [], "add the package to LAYERS"
    loose = sorted(path.name for path in PACKAGE.glob("*.py") if path.name not in {"__init__.py", "__main__.py"})
    assert loose == [], f"modules outside a subpackage: {loose}"


@pytest.mark.unit
def test_ftlib_has_no_import_cycle_not_even_a_type_only_one():
    cycle = find_cycle(import_graph(type_only=True))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.unit
def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == [], "\n".join(upward)


@pytest.mark.unit
def test_nothing_below_the_course_imports_it():
    importers = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if target.startswith("course.") and not module.startswith("course.")
    ]
    assert importers == [], "\n".join(importers)
