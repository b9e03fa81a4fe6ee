"""Lesson 01: which base model? Candidates, measured zero-/few-shot scores, and a rule the learner can change."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ftlib.core.config import DEFAULT_DECODING, Decoding
from ftlib.core.tasks import Task
from ftlib.engine.inference import heldout_loss
from ftlib.engine.models import DEFAULT_MODEL, REGISTRY, hub_reachable, load_model
from ftlib.measure.evaluate import EvaluationResult, evaluate_model, few_shot_examples


def available_candidates(default: str = DEFAULT_MODEL, max_params_b: float = 2.0, hub: bool | None = None) -> list[str]:
    """The candidates this machine can score: the default, plus small registry models when the hub is reachable.

    Args:
        default: always first (offline it is the embedded model).
        max_params_b: skip bigger models, which take long to download and score.
        hub: whether huggingface.co is reachable; checked when None.
    """
    hub = hub_reachable() if hub is None else hub
    names = [default]
    if hub:
        names += [
            spec.name
            for spec in REGISTRY.values()
            if spec.hub_id and spec.name != default and spec.params_b <= max_params_b
        ]
    return names


@dataclass
class CandidateScores:
    """One base model measured on lesson 01's validation split: zero-shot, few-shot, and the references' perplexity."""

    zero_shot: EvaluationResult
    few_shot: EvaluationResult
    perplexity: float
    examples: int

    @classmethod
    def from_dict(cls, saved: dict) -> CandidateScores:
        return cls(
            EvaluationResult.from_dict(saved["zero_shot"]),
            EvaluationResult.from_dict(saved["few_shot"]),
            saved["perplexity"],
            saved["examples"],
        )


def read_candidates(path: str | Path) -> dict[str, CandidateScores]:
    """Lesson 01's ``base/candidates.json``: every candidate's scores, by model name."""
    return {name: CandidateScores.from_dict(saved) for name, saved in json.loads(Path(path).read_text()).items()}


def measure_candidate(
    name: str,
    val_records: list[dict],
    train_records: list[dict],
    task: Task,
    device=None,
    decoding: Decoding = DEFAULT_DECODING,
    shots: int = 3,
    quantization: str | None = None,
) -> CandidateScores:
    """Zero-shot and few-shot task metrics and the perplexity of the reference answers, for one base model.

    ``quantization`` ("nf4") loads it in 4 bits, as on a GPU whose plan trains it with QLoRA.
    """
    model, tokenizer = load_model(name, quantization=quantization, device=device)
    examples = few_shot_examples(train_records, task, k=shots)
    zero = evaluate_model(model, tokenizer, val_records, task, decoding)
    few = evaluate_model(model, tokenizer, val_records, task, decoding, few_shot=examples)
    heldout = zero.heldout or heldout_loss(model, tokenizer, val_records, task, decoding.batch_size)
    return CandidateScores(zero, few, heldout.perplexity, len(val_records))


def score_rows(measured: dict[str, CandidateScores], metric: str) -> list[dict]:
    """One row per measured candidate: its headline metric zero-shot and few-shot (with intervals), and perplexity."""
    rows = []
    for name, result in measured.items():
        row = {"model": name}
        for setting, scored in (("zero-shot", result.zero_shot), ("few-shot", result.few_shot)):
            row[f"{metric} {setting}"] = scored.metrics[metric].text()
        row["perplexity"] = round(result.perplexity, 2)
        rows.append(row)
    return rows


@dataclass
class RecommendationRule:
    """How lesson 01 picks a base model; change any field and re-run the cell.

    A candidate qualifies when its licence is allowed and the memory estimate of ``method`` fits ``gpu``.
    Among those, a measured candidate with the best few-shot ``metric`` wins: a measured score is evidence,
    a parameter count is not. With no qualifying measured candidate, the largest qualifying model is named
    as the one to measure next.
    """

    gpu: str = "T4 16 GB"
    method: str = "qlora"
    metric: str = "json_valid"
    allowed_licences: tuple[str, ...] = ("Apache-2.0", "MIT")
    exclude: tuple[str, ...] = field(default=("tiny-random-llama",))


def recommend(memory_rows: list[dict], measured: dict[str, dict], rule: RecommendationRule) -> tuple[str | None, str]:
    """Apply ``rule`` to the candidates' memory estimates and measured scores.

    Args:
        memory_rows: rows of ``ftlib.engine.plan.gpu_memory_table`` (``model``, ``method``, one "yes"/"no" column
        per GPU).
        measured: ``{name: measure_candidate(...)}`` for the models scored on this machine.

    Returns:
        ``(name or None, the reasoning in plain words)``.
    """
    if memory_rows and rule.gpu not in memory_rows[0]:
        raise KeyError(f"No GPU column {rule.gpu!r} in the memory table; columns: {', '.join(memory_rows[0])}")
    fits = {row["model"] for row in memory_rows if row["method"] == rule.method and row[rule.gpu] == "yes"}
    allowed = {name for name, spec in REGISTRY.items() if spec.license in rule.allowed_licences}
    qualifying = [name for name in REGISTRY if name in fits and name in allowed and name not in rule.exclude]
    if not qualifying:
        return None, (
            f"No candidate has an allowed licence ({', '.join(rule.allowed_licences)}) and fits "
            f"{rule.gpu} with {rule.method}: relax the rule."
        )
    scored = {name: measured[name].few_shot.metrics[rule.metric].value for name in qualifying if name in measured}
    if scored:
        best = max(scored, key=scored.get)
        others = [name for name in qualifying if name not in measured]
        reason = (
            f"{best}: best few-shot {rule.metric} ({scored[best]:.2f}) of the {len(scored)} candidate(s) measured "
            f"here that fit {rule.gpu} with {rule.method} under an allowed licence."
        )
        if others:
            reason += f" Not measured on this machine (no hub or too big to score here): {', '.join(others)}."
        return best, reason
    largest = max(qualifying, key=lambda name: REGISTRY[name].params_b)
    return None, (
        f"No qualifying candidate was measured here; measure {largest} next "
        f"(largest that fits {rule.gpu} with {rule.method})."
    )
