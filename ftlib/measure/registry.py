"""A registry of the training runs under a folder: one row per run, its lineage, and its scores where saved.

``runs_table(root)`` finds every ``manifest.json`` under ``root`` (``ftlib.core.runs.load_run`` reads each) and
returns a ``RegistryRow`` per run: name, method, base model, parent, a short hash of its training data, steps,
final validation loss, and the scores of an evaluation saved with it. Scores come from ``evaluation.json`` in the
run folder (``save_evaluation``), else from lesson 05's ``eval/metrics.json`` beside the run (its "LoRA" and
"QLoRA" entries belong to the ``lora/`` and ``qlora/`` folders). ``lineage`` draws the parent -> child chains.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ftlib.core.fileio import write_json
from ftlib.core.runs import MANIFEST, ManifestError, RunRecord, load_run

if TYPE_CHECKING:
    from ftlib.measure.evaluate import EvaluationResult

EVALUATION = "evaluation.json"  # in a run folder: ftlib.measure.evaluate.evaluate_model's result for that run
LESSON_EVALUATION = Path("eval") / "metrics.json"  # lesson 05's results, beside the run folders
LESSON_RUN_NAMES = {"lora": "LoRA", "qlora": "QLoRA"}  # run folder -> its name in lesson 05's results
HASH_CHARS = 12  # of a SHA-256: tells runs' data apart at a glance (a clash needs ~16 million datasets)


@dataclass(frozen=True)
class RegistryRow:
    """One run of the registry."""

    name: str  # the run folder, relative to the registry's root
    path: Path
    method: str
    base_model: str
    parent: str | None  # the parent run's name (relative to the root when it lies under it), None for a fresh start
    train_data: str  # the first HASH_CHARS of the training data's SHA-256
    steps: int
    final_val_loss: float
    scores: dict[str, float] = field(default_factory=dict)  # metric -> value, from a saved evaluation

    def as_row(self) -> dict:
        """A flat table row (scores as columns of their own)."""
        return {
            "run": self.name,
            "method": self.method,
            "base model": self.base_model,
            "parent": self.parent or "",
            "train data": self.train_data,
            "steps": self.steps,
            "final val loss": self.final_val_loss,
            **self.scores,
        }


def save_evaluation(run: str | Path, result: EvaluationResult) -> Path:
    """Save ``ftlib.measure.evaluate.evaluate_model``'s result for ``run`` in its folder, where the registry reads
    it."""
    return write_json(result, Path(run) / EVALUATION)


def _values(metrics: dict) -> dict[str, float]:
    return {name: stat["value"] for name, stat in metrics.items() if isinstance(stat, dict) and "value" in stat}


def run_scores(folder: Path) -> dict[str, float]:
    """The metric values of the evaluation saved for the run in ``folder``; empty when there is none."""
    own = folder / EVALUATION
    if own.exists():
        return _values(json.loads(own.read_text(encoding="utf-8")).get("metrics", {}))
    lesson = folder.parent / LESSON_EVALUATION
    if folder.name in LESSON_RUN_NAMES and lesson.exists():
        result = json.loads(lesson.read_text(encoding="utf-8")).get(LESSON_RUN_NAMES[folder.name])
        return _values(result.get("metrics", {})) if result else {}
    return {}


def run_folders(root: str | Path) -> list[Path]:
    """Every folder under ``root`` (itself included) with a ``manifest.json``, skipping hidden ones (a run's
    ``.<name>.partial`` scratch folder), in path order."""
    root = Path(root)
    return sorted(
        path.parent
        for path in root.rglob(MANIFEST)
        if not any(part.startswith(".") for part in path.parent.relative_to(root).parts)
    )


def _parent_folder(record: RunRecord) -> Path | None:
    """The folder of a run's parent: the manifest's ``parent`` (version 3), else for an older manifest the run
    folder holding the adapter it continued, when that is a run."""
    if record.parent is not None:
        return Path(record.parent.run)
    if record.continued_from:
        folder = Path(record.continued_from).parent
        return folder if (folder / MANIFEST).exists() else None
    return None


def _name(folder: Path, root: Path) -> str:
    try:
        return folder.resolve().relative_to(root.resolve()).as_posix() or "."
    except ValueError:  # outside the root: its path as recorded
        return str(folder)


def runs_table(root: str | Path) -> list[RegistryRow]:
    """One ``RegistryRow`` per readable run under ``root``; an unreadable manifest is skipped with a warning."""
    root = Path(root)
    rows = []
    for folder in run_folders(root):
        try:
            record = load_run(folder)
        except ManifestError as error:
            warnings.warn(f"registry: skipped {error}", stacklevel=2)
            continue
        parent = _parent_folder(record)
        rows.append(
            RegistryRow(
                name=_name(folder, root),
                path=folder,
                method=record.method,
                base_model=record.base_model,
                parent=_name(parent, root) if parent is not None else None,
                train_data=record.data.train_sha256[:HASH_CHARS],
                steps=record.checkpoints.steps_run,
                final_val_loss=record.metrics.final_val_loss,
                scores=run_scores(folder),
            )
        )
    return rows


def lineage(rows: list[RegistryRow]) -> list[str]:
    """Each chain from a first run to a last re-tune, ``lora -> retune-1 -> retune-2``: one line per run that no
    other run continued. A parent outside the table starts its chain, marked ``(not here)``."""
    names = {row.name for row in rows}
    children: dict[str | None, list[str]] = {}
    for row in rows:
        children.setdefault(row.parent if row.parent in names else None, []).append(row.name)
    parent_of = {row.name: row.parent for row in rows}
    lines = []

    def walk(name: str, chain: list[str]) -> None:
        chain = chain + [name]
        if not children.get(name):
            lines.append(" -> ".join(chain))
        for child in children.get(name, []):
            walk(child, chain)

    for name in children.get(None, []):
        parent = parent_of[name]
        walk(name, [f"{parent} (not here)"] if parent else [])
    return lines
