import json

import pytest

from ftlib.core.config import TrainConfig
from ftlib.core.tasks import get_task
from ftlib.engine import inference
from ftlib.engine.profiles import PROFILES
from ftlib.lessons import sweeps
from ftlib.measure import evaluate, stats
from ftlib.measure.stats import Estimate, token_weighted_loss


def stat(value, low, high):
    return Estimate(value, low, high)


def outcome(name, n_train=100, rate=1e-3, rank=16, exact=None, loss=None):
    exact, loss = exact or stat(0.5, 0.4, 0.6), loss or stat(1.0, 0.9, 1.1)
    metrics = {"labels_exact_match": exact, "category_accuracy": exact, "urgency_accuracy": exact}
    metrics |= {"label_valid": stat(1.0, 1.0, 1.0), "reply_pii": stat(0.0, 0.0, 0.0)}
    return sweeps.Outcome(name, n_train, rate, rank, 16, {"train": [], "val": []}, loss, metrics)


@pytest.mark.unit
def test_every_profile_has_lesson_sizes_and_smoke_trains_three_runs():
    assert set(sweeps.SIZES) == set(PROFILES)
    smoke = sweeps.SIZES["smoke"]
    assert 2 + len(smoke.train_sizes) + len(smoke.learning_rates) + len(smoke.ranks) == 3
    assert sweeps.lesson_sizes("cpu", max_steps=5).max_steps == 5
    assert sweeps.lesson_sizes("cpu", max_steps=2).warmup_steps == 1  # below the budget, as TrainConfig needs


@pytest.mark.unit
def test_labels_are_read_from_an_answer_cut_off_before_its_reply(task):
    cut = '{"category":"outage","urgency":"high","reply":"Sorry, a tech'
    assert evaluate.parse_answer(cut) is None  # why the lesson cannot score cut-off answers as JSON
    scores = sweeps.answer_scores(cut, {"category": "outage", "urgency": "low"}, task)
    assert scores == {
        "category_accuracy": 1.0,
        "urgency_accuracy": 0.0,
        "labels_exact_match": 0.0,
        "label_valid": 1.0,
        "reply_pii": 0.0,
    }


@pytest.mark.unit
def test_a_label_outside_the_set_and_personal_data_in_the_reply_are_counted(task):
    answer = '{"category":"internet","urgency":"high","reply":"Call me on 0161 496 0999 or mail jo@example.com"}'
    scores = sweeps.answer_scores(answer, {"category": "outage", "urgency": "high"}, task)
    assert scores["label_valid"] == 0.0 and scores["reply_pii"] == 1.0 and scores["urgency_accuracy"] == 1.0
    assert sweeps.answer_scores("no JSON at all", {"category": "outage"}, task)["label_valid"] == 0.0


@pytest.mark.unit
def test_answer_length_is_short_only_where_labels_come_first(task):
    sizes = sweeps.SIZES["cpu"]
    assert sweeps.answer_tokens(task, sizes, 80) == sizes.label_tokens
    assert sweeps.answer_tokens(task, sizes, 80, reply=True) == sizes.reply_tokens
    assert sweeps.answer_tokens(get_task("listings"), sizes, 80) == 80  # a text answer is scored whole


@pytest.mark.unit
def test_raw_set_keeps_every_flaw_but_untrainable_records_and_held_out_tickets(tickets, task):
    raw = [
        *tickets,
        dict(tickets[0], id="dup"),  # an exact duplicate of a kept ticket: raw keeps it
        dict(tickets[1], id="pii", ticket="I'm jo@example.com, how do I change my email?"),
        {"id": "x", "ticket": "no labels"},
        dict(tickets[2], id="bad", category="Billing!"),
        dict(tickets[3], id="held"),
    ]
    held_out = [{"id": "held", "ticket": "other"}, {"id": "t9", "ticket": tickets[0]["ticket"].upper()}]
    result = sweeps.raw_trainable(raw, task, held_out)
    assert [r["id"] for r in result.records] == ["b", "c", "d", "pii"]
    assert (result.read, result.missing_fields, result.label_outside_set, result.held_out) == (9, 1, 1, 3)
    assert sum(row["count"] for row in result.rows()[1:]) == result.read


@pytest.mark.unit
def test_learning_curve_sets_are_nested_and_end_with_all(tickets):
    sets = sweeps.subsets(tickets, (2, 3, 10))
    assert list(sets) == [2, 3, 4] and sets[4] == tickets and sets[2] == tickets[:2]


@pytest.mark.unit
def test_per_example_losses_add_up_to_the_held_out_loss(tiny, tickets, task):
    model, tokenizer = tiny
    losses = sweeps.example_losses(model, tokenizer, tickets, task, batch_size=3)
    interval = token_weighted_loss(losses)
    assert interval.value == pytest.approx(inference.heldout_loss(model, tokenizer, tickets, task, 2).loss, rel=1e-5)
    assert interval.low <= interval.value <= interval.high


@pytest.mark.unit
def test_intervals_decide_the_sentences(task):
    good, poor = stat(0.8, 0.7, 0.9), stat(0.3, 0.2, 0.4)
    assert stats.compare(good, poor) == "higher" and stats.compare(poor, good) == "lower"
    assert stats.compare(good, stat(0.75, 0.6, 0.85)) == "within noise"
    sentence = sweeps.clean_vs_raw_sentence(outcome("curated", exact=good), outcome("raw", exact=poor), task)
    assert "curated data gave clearly better answers" in sentence and "personal data" in sentence
    same = sweeps.clean_vs_raw_sentence(outcome("curated"), outcome("raw"), task)
    assert "no difference this test set can resolve" in same and "validation loss is within noise" in same
    curve = {16: outcome("a", 16, exact=poor), 64: outcome("b", 64, exact=good), 200: outcome("c", 200, exact=good)}
    text = sweeps.learning_curve_sentence(curve, task, batch_size=8)
    assert "from 64 examples on" in text and "above 128 examples" in text
    rates = {"low": outcome("l", rate=1e-4, exact=poor), "mid": outcome("m", exact=good)}
    ranks = {"r4": outcome("r4", rank=4), "r16": outcome("r16")}
    text = sweeps.sweep_sentence(rates, ranks, task)
    assert "a real gap" in text and "learning rate moved labels_exact_match more than the rank" in text
    # Labels within noise everywhere: the validation loss decides which of the two moved the result.
    rates = {"low": outcome("l", rate=1e-4, loss=stat(2.0, 1.9, 2.1)), "mid": outcome("m")}
    ranks = {"r4": outcome("r4", rank=4, loss=stat(1.05, 0.95, 1.15)), "r16": outcome("r16")}
    text = sweeps.sweep_sentence(rates, ranks, task)
    assert "learning rate moved the validation loss more than the rank" in text
    assert "lowest at learning rate 0.001 (1.000 [0.900, 1.100])" in text


@pytest.mark.unit
def test_runs_that_label_no_better_than_guessing_are_named(task):
    guess = outcome("guess", exact=stat(0.17, 0.1, 0.25))
    assert "1 of 2 runs label category no better than guessing" in sweeps.chance_note(
        {"guess": guess, "learned": outcome("learned", exact=stat(0.8, 0.7, 0.9))}, task
    )
    shared = {"curated": guess, "lr 0.001": guess}  # one run shown in two sections counts once
    guess.folder = "runs/curated"
    assert "1 of 1 runs label category" in sweeps.chance_note(shared, task)
    assert sweeps.chance_note({"learned": outcome("learned")}, task).startswith("Every run labels category better")
    assert sweeps.chance_note({"a": guess}, get_task("listings")) == ""
    assert "nothing to compare" in sweeps.sweep_sentence({"only": outcome("o")}, {}, task)


@pytest.mark.unit
def test_runner_trains_identical_runs_once_and_writes_each_outcome(tmp_path, tickets, task, cpu):
    sizes = sweeps.LessonSizes(1, 0, 1, 2, 2, 4, 6, (2,), (), ())
    config = TrainConfig(max_steps=1, warmup_steps=0, eval_steps=1, batch_size=2, eval_batch_size=2, lora_r=4)
    runner = sweeps.Runner("tiny-random-llama", config, task, cpu, tmp_path, tickets[:2], tickets[2:], 8, sizes)
    first = runner.run("curated", tickets)
    again = runner.run("lr", tickets, learning_rate=config.learning_rate)
    assert again.metrics == first.metrics and again.name == "lr" and not (tmp_path / "lr").exists()
    small = runner.run("n2", tickets[:2], lora_r=2)
    saved = json.loads((tmp_path / "n2" / "outcome.json").read_text())
    assert saved["n_train"] == 2 and saved["lora_r"] == 2 and len(saved["predictions"]) == 2
    assert set(small.metrics) >= {"category_accuracy", "label_valid", "reply_pii"}
    assert small.val_loss.low <= small.val_loss.value <= small.val_loss.high and small.history["val"]
    rows = sweeps.outcome_rows({"a": first, "b": small}, sweeps.headline(task), batch_size=2)
    assert rows[1]["epochs"] == 1.0 and rows[1]["rank"] == 2 and "[" in rows[0]["category_accuracy"]


def _variant_entry(field: tuple[float, float, float], method: str = "lora", weight: float = 10.0) -> dict:
    stat = {"value": field[0], "low": field[1], "high": field[2]}
    metrics = {"category_accuracy": stat, "urgency_accuracy": stat}
    return {
        "settings": {},
        "configs": {method: {"max_steps": 220, "label_token_weight": weight, "learning_rate": 1e-3}},
        "results": {
            method: {"test": {"metrics": metrics}, "field_test": {"metrics": metrics}, "train_seconds": 900.0},
            "base": {"test": {"metrics": metrics}, "field_test": {"metrics": metrics}},
        },
    }


@pytest.mark.unit
def test_full_budget_results_are_read_and_compared_by_their_intervals(tmp_path):
    path = tmp_path / "quality_variants.json"
    path.write_text(
        json.dumps(
            {
                "label-weight-10": _variant_entry((0.85, 0.80, 0.90)),
                "close": _variant_entry((0.83, 0.78, 0.88), weight=3.0),
                "far": _variant_entry((0.50, 0.43, 0.57)),
                "quantized": _variant_entry((0.84, 0.79, 0.89), method="qlora"),
            }
        )
    )
    variants = sweeps.full_budget_variants(path)
    assert [(v.name, v.method) for v in variants] == [
        ("label-weight-10", "lora"),
        ("close", "lora"),
        ("far", "lora"),
        ("quantized", "qlora"),
    ]  # the base model's rows are not trained variants
    rows = sweeps.full_budget_rows(variants)
    assert rows[1]["label weight"] == "3" and rows[1]["field category"] == "0.83 [0.78, 0.88]"
    sentence = sweeps.full_budget_sentence(variants, reference="label-weight-10")
    assert "close: category within noise, urgency within noise" in sentence
    assert "far: category lower, urgency lower" in sentence
    assert "quantized" not in sentence  # LoRA variants only
    assert "1 of 2 differ" in sentence
    assert "no LoRA run named 'missing'" in sweeps.full_budget_sentence(variants, reference="missing")


@pytest.mark.unit
def test_the_committed_full_budget_results_hold_the_reference_run():
    names = {(v.name, v.method) for v in sweeps.full_budget_variants()}
    assert (sweeps.FULL_BUDGET_REFERENCE, "lora") in names
