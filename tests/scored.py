"""Typed evaluation results for tests that need one without running a model (``ftlib.measure.evaluate``)."""

from __future__ import annotations

from ftlib.engine.inference import HeldOut
from ftlib.measure.evaluate import EvaluationResult, Prediction
from ftlib.measure.stats import Estimate


def result(
    metrics: dict[str, tuple[float, float, float]] | None = None,
    predictions: list[Prediction] | None = None,
    perplexity: float | None = None,
) -> EvaluationResult:
    """An ``EvaluationResult`` of ``{metric: (value, low, high)}``, the given answers and, optionally, a perplexity."""
    predictions = predictions or []
    return EvaluationResult(
        {name: Estimate(*stat) for name, stat in (metrics or {}).items()},
        HeldOut(0.0, perplexity, 0) if perplexity is not None else None,
        predictions,
        len(predictions),
    )


def with_metrics(metrics: dict[str, Estimate]) -> EvaluationResult:
    """An ``EvaluationResult`` holding only these metrics."""
    return EvaluationResult(dict(metrics), None, [], 0)
