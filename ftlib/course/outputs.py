"""The lessons' committed outputs: a real ``cpu``-profile run's plots, tables and readings, kept in ``notebooks/``.

A lesson should read on GitHub, or in Colab before it runs, with its figures in place. ``commit_outputs`` copies
the outputs of an executed notebook (``make curriculum``'s ``runs/<task>-cpu/notebooks/``) into the lesson's file,
cell by cell, and only where the cell's source is still the one that ran. It keeps what a learner can act on:

- ftlib's progress lines (``[ftlib] train: step 40/290 ...``) are dropped: they were live progress, not a result;
- paths under the run's repository are written relative to it (``runs/support_tickets-cpu/...``);
- papermill's timing and kernel metadata is dropped (it changes on every run and says nothing about the lesson).

Each copied cell records a hash of its source (``metadata.ftlib.source_sha``), and the notebook records the run
(``metadata.ftlib.reference_run``: date, machine, profile, commit). ``stale_cells`` lists the cells whose source
changed since: tests/test_notebooks.py fails on any, so a committed output never shows what the code no longer
does. The objectives cell names the run (``ReferenceRun.line``), before its run times.

CI still runs every notebook in the smoke profile: nbval compares only the cells marked ``# NBVAL_CHECK_OUTPUT``
(profile-independent ones: counts of parameters and curated records), and pytest checks values of the smoke run.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ftlib.core.progress import LINE_PREFIX
from ftlib.course.timings import RUN_TIMES_HEADING

META = "ftlib"  # the key of ftlib's cell and notebook metadata
REFERENCE_START = "**The outputs below**"  # the opening cell's line naming the run
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass(frozen=True)
class ReferenceRun:
    """The run whose outputs a lesson carries: what the opening line and ``metadata.ftlib.reference_run`` say."""

    date: str  # YYYY-MM-DD
    machine: str  # e.g. "2-core AMD EPYC, 23.5 GiB"
    profile: str  # the profile the run used ("cpu")
    commit: str  # the commit the run was made from (short hash)

    def line(self) -> str:
        return (
            f"{REFERENCE_START} come from a `{self.profile}`-profile run on {self.date} ({self.machine}, commit "
            f"`{self.commit}`); running the notebook replaces them with yours."
        )


def source_sha(source: str) -> str:
    """The hash a copied cell keeps of the source that made its outputs."""
    return hashlib.sha1(source.encode()).hexdigest()[:16]


def clean_output(output: dict, root: str | Path) -> dict | None:
    """One output as a lesson keeps it (see the module docstring), or None when nothing is left of it."""
    output = copy.deepcopy(dict(output))
    prefix = str(root).rstrip("/") + "/"
    if output.get("output_type") == "stream":
        lines = output.get("text", "").splitlines(keepends=True)
        text = "".join(line for line in lines if not line.lstrip().startswith(LINE_PREFIX.strip()))
        output["text"] = text.replace(prefix, "")
        return output if output["text"].strip() else None
    data = output.get("data")
    if isinstance(data, dict):
        data.pop(WIDGET_VIEW, None)  # a widget's view is dead without its kernel; its text form stays
        for kind, value in list(data.items()):
            if kind.startswith("text/") and isinstance(value, str):
                data[kind] = value.replace(prefix, "")
            elif kind.startswith("text/") and isinstance(value, list):
                data[kind] = [part.replace(prefix, "") for part in value]
        if not data:
            return None
    if output.get("output_type") == "error":
        output["traceback"] = [line.replace(prefix, "") for line in output.get("traceback", [])]
    return output


def commit_outputs(lesson: dict, executed: dict, root: str | Path, run: ReferenceRun) -> tuple[dict, list[int]]:
    """The lesson notebook with the executed notebook's outputs, and the indices of its code cells left empty.

    Cells are matched by id, and copied only where the source is the same as the one that ran (papermill's
    injected-parameters cell has no match and is skipped). Every code cell without a match loses its outputs.
    """
    lesson = copy.deepcopy(lesson)
    ran = {cell.get("id"): cell for cell in executed["cells"] if cell["cell_type"] == "code"}
    empty = []
    for index, cell in enumerate(lesson["cells"]):
        if cell["cell_type"] != "code":
            continue
        cell.get("metadata", {}).pop(META, None)
        source = _text(cell["source"])
        match = ran.get(cell.get("id"))
        if match is None or _text(match["source"]) != source:
            cell["outputs"], cell["execution_count"] = [], None
            empty.append(index)
            continue
        outputs = [clean_output(output, root) for output in match.get("outputs", [])]
        cell["outputs"] = [output for output in outputs if output is not None]
        cell["execution_count"] = match.get("execution_count")
        cell.setdefault("metadata", {})[META] = {"source_sha": source_sha(source)}
    metadata = lesson.setdefault("metadata", {})
    metadata.pop("papermill", None)
    metadata[META] = {"reference_run": asdict(run)}
    _set_reference_line(lesson, run)
    return lesson, empty


def stale_cells(lesson: dict) -> list[int]:
    """Indices of code cells whose outputs came from another source than the cell's own (edited since the run)."""
    stale = []
    for index, cell in enumerate(lesson["cells"]):
        if cell["cell_type"] != "code" or not cell.get("outputs"):
            continue
        recorded = cell.get("metadata", {}).get(META, {}).get("source_sha")
        if recorded != source_sha(_text(cell["source"])):
            stale.append(index)
    return stale


def reference_run(lesson: dict) -> ReferenceRun | None:
    """The run a lesson's outputs come from, as its metadata records it (None: no outputs committed)."""
    recorded = lesson.get("metadata", {}).get(META, {}).get("reference_run")
    return ReferenceRun(**recorded) if recorded else None


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else source


def _set_reference_line(lesson: dict, run: ReferenceRun) -> None:
    """Put the line naming the run before the run times in the objectives cell (the first markdown cell that has
    them, else the first cell), replacing an earlier one."""
    markdown = [cell for cell in lesson["cells"] if cell["cell_type"] == "markdown"]
    opening = next((cell for cell in markdown if RUN_TIMES_HEADING in _text(cell["source"])), lesson["cells"][0])
    text = _text(opening["source"])
    text = re.sub(rf"\n*{re.escape(REFERENCE_START)}[^\n]*\n*", "\n\n", text).rstrip("\n")
    if RUN_TIMES_HEADING in text:
        before, after = text.split(RUN_TIMES_HEADING, 1)
        text = f"{before.rstrip()}\n\n{run.line()}\n\n{RUN_TIMES_HEADING}{after}"
    else:
        text = f"{text}\n\n{run.line()}"
    opening["source"] = text
