"""Lesson 01's recommendation rule, on fixed memory rows and measured scores."""

import pytest
from scored import result

from ftlib.lessons import choice

pytestmark = pytest.mark.unit


def row(model, method, t4):
    return {"model": model, "method": method, "T4 16 GB": t4, "A100 80 GB": "yes"}


def measured(score):
    scores = result({"json_valid": (score, score, score)})
    return choice.CandidateScores(scores, scores, 10.0, 0)


MEMORY = [
    row("smollm2-135m-instruct", "qlora", "yes"),
    row("qwen2.5-7b-instruct", "qlora", "yes"),
    row("qwen2.5-7b-instruct", "full", "no"),
    row("llama-3.1-8b-instruct", "qlora", "yes"),
    row("smollm2-1.7b-instruct", "qlora", "yes"),
]


def test_best_measured_candidate_that_fits_and_is_allowed_wins():
    scores = {
        "smollm2-135m-instruct": measured(0.2),
        "smollm2-1.7b-instruct": measured(0.7),
        "llama-3.1-8b-instruct": measured(0.9),
    }  # best score, but its licence is not allowed below
    name, reason = choice.recommend(MEMORY, scores, choice.RecommendationRule())
    assert name == "smollm2-1.7b-instruct"
    assert "0.70" in reason and "qwen2.5-7b-instruct" in reason  # fits, allowed, but not measured here


def test_changing_the_rule_changes_the_answer():
    scores = {"smollm2-135m-instruct": measured(0.2), "llama-3.1-8b-instruct": measured(0.9)}
    rule = choice.RecommendationRule(allowed_licences=("Apache-2.0", "Llama 3.1 Community License (gated)"))
    assert choice.recommend(MEMORY, scores, rule)[0] == "llama-3.1-8b-instruct"
    full = choice.RecommendationRule(method="full")
    name, reason = choice.recommend(MEMORY, scores, full)
    assert name is None and "relax the rule" in reason


def test_without_measurements_it_names_what_to_measure_next():
    name, reason = choice.recommend(MEMORY, {}, choice.RecommendationRule())
    assert name is None and "measure qwen2.5-7b-instruct next" in reason


def test_unknown_gpu_is_a_clear_error():
    with pytest.raises(KeyError, match="No GPU column 'V100'"):
        choice.recommend(MEMORY, {}, choice.RecommendationRule(gpu="V100"))


def test_offline_candidates_are_the_default_only():
    assert choice.available_candidates("smollm2-135m-instruct", hub=False) == ["smollm2-135m-instruct"]
    online = choice.available_candidates("smollm2-135m-instruct", hub=True, max_params_b=2.0)
    assert online[0] == "smollm2-135m-instruct" and "qwen2.5-7b-instruct" not in online
    assert "smollm2-360m-instruct" in online and "tiny-random-llama" not in online
