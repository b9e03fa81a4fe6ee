"""The success bar: fixed in lesson 02 before any training, every run judged against it in lesson 05."""

import pytest
from scored import with_metrics

from ftlib.core.tasks import TASKS
from ftlib.measure import evaluate
from ftlib.measure.stats import Estimate


def stat(value, low, high):
    return Estimate(value, low, high)


@pytest.mark.unit
def test_bars_for_the_built_in_tasks():
    tickets = evaluate.success_bar(TASKS["support_tickets"])
    assert tickets.thresholds == {"json_valid": 0.99, "category_accuracy": 0.95, "urgency_accuracy": 0.85}
    listings = evaluate.success_bar(TASKS["listings"])
    assert listings.thresholds == {"attribute_coverage": 0.8, "description_rougeL": 0.3}
    assert "a choice" in listings.note
    chats = evaluate.success_bar(TASKS["shop_chats"])
    assert set(chats.thresholds) <= set(TASKS["shop_chats"].headline_metrics) and chats.thresholds


@pytest.mark.unit
def test_bar_written_and_read_back(tmp_path):
    task = TASKS["support_tickets"]
    path = evaluate.success_bar(task).write(tmp_path / evaluate.SUCCESS_BAR)
    assert evaluate.load_success_bar(path, task) == evaluate.success_bar(task)
    assert evaluate.load_success_bar(path, task).source == str(path)
    edited = evaluate.SuccessBar("support_tickets", {"json_valid": 0.5})
    edited.write(path)
    assert evaluate.load_success_bar(path, task).thresholds == {"json_valid": 0.5}
    assert evaluate.load_success_bar(tmp_path / "none.json", task).source == "defaults"  # 02 has not run
    with pytest.raises(ValueError, match="listings"):
        evaluate.load_success_bar(path, TASKS["listings"])


@pytest.mark.unit
def test_judge_reads_the_interval_and_shows_macro_f1():
    bar = evaluate.SuccessBar(
        "support_tickets", {"json_valid": 0.99, "category_accuracy": 0.95, "urgency_accuracy": 0.85}
    )
    results = {
        "LoRA": with_metrics(
            {
                "json_valid": stat(1.0, 1.0, 1.0),
                "category_accuracy": stat(0.96, 0.93, 0.98),
                "category_macro_f1": stat(0.9, 0.85, 0.95),
                "urgency_accuracy": stat(0.7, 0.64, 0.76),
            }
        ),
        "base": with_metrics({"json_valid": stat(0.2, 0.1, 0.3)}),
    }
    rows = evaluate.judge(results, bar)
    verdicts = {(row["run"], row["metric"]): row["met?"] for row in rows}
    assert verdicts == {
        ("LoRA", "json_valid"): "yes",
        ("LoRA", "category_accuracy"): "unclear",  # 0.96 is above 0.95, but the interval reaches 0.93
        ("LoRA", "urgency_accuracy"): "no",
        ("base", "json_valid"): "no",
        ("base", "category_accuracy"): "missing",
        ("base", "urgency_accuracy"): "missing",
    }
    category = next(row for row in rows if row["run"] == "LoRA" and row["metric"] == "category_accuracy")
    assert category["95% CI"] == "[0.93, 0.98]" and category["at least"] == 0.95
    assert category["macro-F1 [95% CI]"] == "0.90 [0.85, 0.95]"
    assert all(list(row) == list(rows[0]) for row in rows)  # one set of columns: one table


@pytest.mark.unit
def test_judge_on_scored_answers():
    task = TASKS["support_tickets"]
    references = [{"ticket": "x", "category": "billing", "urgency": "low", "reply": "ok"}] * 4
    answers = ['{"category": "billing", "urgency": "low", "reply": "ok"}'] * 4
    metrics = evaluate.score_answers(answers, references, task)
    rows = evaluate.judge({"perfect": with_metrics(metrics)}, evaluate.success_bar(task))
    assert [row["met?"] for row in rows] == ["yes", "yes", "yes"]
    assert rows[1]["macro-F1 [95% CI]"].startswith("1.00")
