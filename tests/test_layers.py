"""ftlib's modules import each other one way only: no circles, and no module imports a layer above its own.

The layers, bottom to top (a module may import its own layer or any below, never one above):

0. ``fileio``, ``presets``, ``tasks``, ``runtime``, ``progress``, ``hosted``, ``data``, ``timings``: files, the
   methods and LoRA presets, task definitions, devices, progress lines, the hosted-notebook setup, records and
   tokenization, measured notebook run times;
1. ``models``, ``memory``, ``curate``, ``flaws``, ``samples``, ``evaluate``, ``train``, ``export``: the engine (loading,
   estimating, cleaning, generating samples, scoring, training, exporting);
2. ``plots``, ``reading``, ``review``, ``choice``, ``plan``, ``profiles``, ``publish``, ``report``, ``sweeps``,
   ``drift``, ``registry``, ``forgetting``, ``cost``, ``after_training``: what the lessons show, say and decide from
   the engine's results, the executed notebooks as HTML pages, lesson 06's experiments (several engine runs
   compared), and lesson 07's measures of a tuned model (how far it moved from its base, what answering costs),
   drift check, re-tunes, registry of runs and the lesson's sizes and steps;
3. ``lesson``, ``cli`` (and ``__main__``): the two front ends, which nothing else imports.

The graph is read from the source with ``ast``, not by importing: every ``import ftlib.x`` and
``from ftlib[.x] import y`` counts as an edge, at module level and inside functions alike, since a
function-level import is a real dependency that only runs later. Imports under ``if TYPE_CHECKING:`` are left
out: they never run, they only name types. ``import ftlib`` (the package, for its path) is no edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ftlib"

LAYERS = {
    0: ("fileio", "presets", "config", "runs", "tasks", "runtime", "progress", "hosted", "data", "timings"),
    1: ("models", "memory", "curate", "flaws", "samples", "evaluate", "train", "export"),
    2: (
        "plots",
        "reading",
        "review",
        "choice",
        "plan",
        "profiles",
        "publish",
        "report",
        "sweeps",
        "drift",
        "registry",
        "forgetting",
        "cost",
        "after_training",
    ),
    3: ("lesson", "cli", "__main__"),
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")


def _is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imported_modules(node: ast.AST) -> list[str]:
    """The ftlib modules one import statement names (``from ftlib import x`` names ``x`` when it is a module)."""
    if isinstance(node, ast.Import):
        return [
            alias.name.split(".")[1]
            for alias in node.names
            if alias.name.startswith("ftlib.") and len(alias.name.split(".")) > 1
        ]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        parts = node.module.split(".")
        if parts[0] != "ftlib":
            return []
        if len(parts) > 1:
            return [parts[1]]
        return [alias.name for alias in node.names if alias.name in MODULES]
    return []


def import_graph() -> dict[str, set[str]]:
    """module -> the ftlib modules it imports anywhere in its source, except under ``if TYPE_CHECKING:``."""
    graph = {}
    for module in MODULES:
        tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
        skipped = {
            id(inner)
            for block in ast.walk(tree)
            if _is_type_checking_block(block)
            for statement in block.body
            for inner in ast.walk(statement)
        }
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


@pytest.mark.unit
def test_the_graph_sees_module_and_function_level_imports_but_not_type_checking_ones():
    graph = import_graph()
    assert "tasks" in graph["data"]  # module level: from ftlib.tasks import Task
    assert "train" in graph["cli"]  # inside functions only
    assert "models" in graph["memory"]  # from ftlib import models, inside a function
    assert "profiles" not in graph["plan"]  # plan names Profile under TYPE_CHECKING only


@pytest.mark.unit
def test_find_cycle_reports_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.unit
def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LAYER_OF)) == [], "add the new module to LAYERS in tests/test_layers.py"
    assert sorted(set(LAYER_OF) - set(MODULES)) == [], "a module in LAYERS no longer exists"


@pytest.mark.unit
def test_ftlib_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.unit
def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} (layer {LAYER_OF[module]}) imports {target} (layer {LAYER_OF[target]})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if LAYER_OF[target] > LAYER_OF[module]
    ]
    assert upward == [], "\n".join(upward)


@pytest.mark.unit
def test_nothing_imports_the_front_ends():
    importers = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in sorted(targets & {"lesson", "cli"})
        if module != "__main__"
    ]
    assert importers == [], "\n".join(importers)
