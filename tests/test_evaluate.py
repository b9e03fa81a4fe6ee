import json
import math

import pytest
import scored
import torch

from ftlib.core.config import Decoding
from ftlib.data import batches
from ftlib.data.batches import IGNORE_INDEX, PaddingCollator, SupervisedDataset
from ftlib.engine import inference
from ftlib.engine.inference import HeldOut
from ftlib.measure import evaluate, stats
from ftlib.measure.evaluate import Prediction

pytestmark = pytest.mark.unit


def answer(category, urgency, reply="Sorry, a technician is on the way."):
    return json.dumps({"category": category, "urgency": urgency, "reply": reply})


def test_scores_on_fixed_predictions(tickets, task):
    predictions = [
        answer("outage", "high"),  # all right, reply identical
        answer("account", "medium", "Settings"),  # category right, urgency wrong
        "the category is billing",  # not JSON
        '["hardware", "high"]',  # JSON, but not an object
    ]
    metrics = evaluate.score_answers(predictions, tickets, task)
    assert metrics["json_valid"].value == 0.5
    assert metrics["category_accuracy"].value == 0.5
    assert metrics["urgency_accuracy"].value == 0.25
    assert metrics["labels_exact_match"].value == 0.25
    assert metrics["reply_rougeL"].value == pytest.approx(
        (1.0 + 0.4 + 0 + 0) / 4
    )  # "Settings" vs "go to settings profile": P=1, R=1/4, F=0.4


def test_labels_are_compared_case_insensitively(tickets, task):
    metrics = evaluate.score_answers([answer(" Outage", "HIGH")], tickets[:1], task)
    assert metrics["category_accuracy"].value == metrics["urgency_accuracy"].value == 1.0


def test_missing_reference_fields_skip_their_metrics(task):
    metrics = evaluate.score_answers([answer("outage", "high")], [{"ticket": "x", "category": "outage"}], task)
    assert metrics["category_accuracy"].value == 1.0
    assert "urgency_accuracy" not in metrics and "reply_rougeL" not in metrics


def test_a_reference_field_missing_on_some_records_skips_only_those(tickets, task):
    """The first record decides nothing: a field absent from one reference leaves its metric over the others."""
    partial = {k: v for k, v in tickets[0].items() if k != "category"}
    metrics = evaluate.score_answers([answer("outage", "high"), answer("billing", "low")], [partial, tickets[1]], task)
    assert metrics["category_accuracy"].value == 0.0  # tickets[1] alone: account, answered billing
    assert metrics["urgency_accuracy"].value == 1.0  # both: high and low
    assert "category_macro_f1" not in metrics  # macro-F1 needs every reference


def test_prediction_count_must_match(tickets, task):
    with pytest.raises(ValueError, match="1 predictions for 4 references"):
        evaluate.score_answers(["{}"], tickets, task)


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = [1.0] * 70 + [0.0] * 30
    low, high = stats.bootstrap_interval(values, seed=3)
    assert low < 0.7 < high and high - low < 0.25
    assert stats.bootstrap_interval(values, seed=3) == (low, high)
    assert stats.bootstrap_interval([1.0] * 10) == (1.0, 1.0)


def test_heldout_loss_matches_a_manual_token_weighted_mean(tiny, tickets, task):
    model, tokenizer = tiny
    result = inference.heldout_loss(model, tokenizer, tickets, task, batch_size=3)
    dataset = SupervisedDataset(tickets, tokenizer, 256, task)
    manual = []
    for example in dataset.examples:  # one at a time, the plain forward pass: no padding, no shared prefix
        batch = PaddingCollator(tokenizer.pad_token_id)([example])
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
        targets = batch["labels"][0, 1:]
        keep = targets != IGNORE_INDEX
        manual.append(
            (torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum").item(), int(keep.sum()))
        )
    # Batched (a shared prompt prefix run once, logits at the answer positions only): the same per-example scores
    batched = inference.example_losses(model, tokenizer, tickets, task, batch_size=3)
    assert [c for _, c in batched] == [c for _, c in manual]
    assert [n for n, _ in batched] == pytest.approx([n for n, _ in manual], rel=1e-5)
    nll, count = sum(n for n, _ in manual), sum(c for _, c in manual)
    assert result.tokens == count
    assert result.loss == pytest.approx(nll / count, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_batched_left_padded_generation_matches_one_by_one(tiny, tickets, task):
    model, tokenizer = tiny
    conversations = [task.prompt_messages(t) for t in tickets]
    batched = inference.generate(model, tokenizer, conversations, decoding=Decoding(4, 12))
    single = [inference.generate(model, tokenizer, [c], decoding=Decoding(1, 12))[0] for c in conversations]
    assert batched == single
    assert tokenizer.padding_side == "right"  # untouched


def test_shared_prefix_generation_matches_plain_generate(tiny, tickets, task, monkeypatch):
    """The few-shot prompts share a long prefix: cached once, the answers are those of plain generation."""
    model, tokenizer = tiny
    conversations = [task.prompt_messages(t, tickets[:2]) for t in tickets]
    prefixes = []
    real_cache = inference._prefix_cache
    monkeypatch.setattr(inference, "_prefix_cache", lambda m, p: prefixes.append(len(p)) or real_cache(m, p))
    shared = inference.generate(model, tokenizer, conversations, decoding=Decoding(3, 12))
    plain = inference.generate(model, tokenizer, conversations, decoding=Decoding(3, 12), share_prefix=False)
    assert shared == plain
    rows = [tokenizer(batches.prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"] for c in conversations]
    assert prefixes == [batches.common_prefix_length(rows)]  # computed once, for every batch
    assert prefixes[0] > 0.5 * min(len(r) for r in rows)  # the system turn and both solved examples


def left_padded(tokenizer, conversations):
    rows = [tokenizer(batches.prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"] for c in conversations]
    width, pad = max(len(r) for r in rows), tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    return ids, torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])


def test_rows_leave_the_batch_at_their_eos_and_still_answer_as_generate(tiny, tickets, task):
    """greedy_decode drops a row at its EOS: with an EOS the rows reach at different steps, later steps run fewer
    rows and every answer is still the one ``model.generate`` gives."""
    model, tokenizer = tiny
    ids, mask = left_padded(tokenizer, [task.prompt_messages(t) for t in tickets])
    plain = dict(attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    free = model.generate(input_ids=ids, eos_token_id=tokenizer.vocab_size + 7, **plain)[:, ids.shape[1] :].tolist()

    # As EOS, the generated token whose first appearance ends the rows at the most different steps.
    def ends(token):
        return [row.index(token) + 1 if token in row else 12 for row in free]

    eos = max(sorted({t for row in free for t in row}), key=lambda t: len(set(ends(t))))
    assert len(set(ends(eos))) > 1 and min(ends(eos)) < 12
    expected = [
        inference.answer_ids(row, eos)
        for row in model.generate(input_ids=ids, eos_token_id=eos, **plain)[:, ids.shape[1] :].tolist()
    ]
    rows_per_step = []
    hook = model.register_forward_pre_hook(
        lambda m, a, k: rows_per_step.append(k["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        ours = inference.greedy_decode(model, ids, mask, None, 0, 12, eos)
    finally:
        hook.remove()
    assert ours == expected
    assert [len(a) for a in ours] == ends(eos)
    assert rows_per_step[0] == len(tickets) and rows_per_step[-1] < len(tickets)
    assert rows_per_step == sorted(rows_per_step, reverse=True) and len(rows_per_step) == max(len(a) for a in ours)


def test_a_generation_config_that_changes_the_logits_is_left_to_generate(tiny, tickets, task, monkeypatch):
    model, tokenizer = tiny
    conversations = [task.prompt_messages(t) for t in tickets[:2]]
    assert inference.plain_greedy(model)
    model.generation_config.repetition_penalty = 1.3
    assert not inference.plain_greedy(model)
    monkeypatch.setattr(inference, "greedy_decode", lambda *a, **k: pytest.fail("the penalty would be skipped"))
    ours = inference.generate_tokens(model, tokenizer, conversations, Decoding(2, 8), share_prefix=False)
    ids, mask = left_padded(tokenizer, conversations)
    output = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    assert ours == [inference.answer_ids(r, tokenizer.eos_token_id) for r in output[:, ids.shape[1] :].tolist()]


# Answers a model might give, each with the length of its shortest beginning that JsonScan calls invalid (None:
# never; a valid answer, or one still open at its end).
ANSWERS = [
    ('{"category": "billing", "urgency": "high"}', None),
    ('  \n{"a": {"b": [1, {"c": "}"}]}, "d": "say \\"}\\" {"}\n ', None),  # braces and quotes inside strings
    ('{"reply": "\\\\"}', None),  # an escaped backslash before the closing quote
    ('{"category": "billing", "reply": "cut off here', None),  # invalid, but a continuation could close it
    ('```json\n{"category": "billing"}\n```', 1),
    ("I'm sorry for your loss, but as a support agent I cannot help.", 1),
    ('["billing", "high"]', 1),
    ('{"category": "billing"} Hope this helps!', len('{"category": "billing"} H')),
    ('{"category": "billing"}}', len('{"category": "billing"}}')),
    ('{"a": 1}\n\n{"b": 2}', len('{"a": 1}\n\n{')),
]


@pytest.mark.parametrize(("text", "invalid_at"), ANSWERS)
def test_the_json_scan_calls_an_answer_invalid_only_when_no_continuation_can_parse(text, invalid_at):
    """Read as a model writes it, one character more each time: JsonScan says invalid at the first character that
    rules out parse_answer, and then nothing that follows (the rest of the answer, a closing brace) parses."""
    scan = inference.JsonScan()
    decided = next((end for end in range(1, len(text) + 1) if scan.read(text[:end])), None)
    assert decided == invalid_at
    if decided is None:
        return
    assert evaluate.parse_answer(text) is None
    for rest in (text[decided:], "}", '"}', " ", ""):
        assert evaluate.parse_answer(text[:decided] + rest) is None


def test_the_json_scan_waits_for_a_character_cut_in_half_and_rereads_a_changed_text():
    scan = inference.JsonScan()
    assert not scan.read("\ufffd")  # a token ended inside a multi-byte character: not read yet
    assert not scan.read("\u3000{")  # it was an ideographic space, which strip() removes
    assert scan.read("\u3000{}x")
    assert not scan.read("{")  # not a continuation of the text before: read anew
    assert scan.state == "object"


def test_json_answers_stop_a_few_tokens_after_they_can_no_longer_parse(tiny, tickets, task):
    """The tiny model writes noise, never JSON: with json_answers every row stops invalid_tail_tokens after its
    first character that rules out JSON, keeping the beginning of the full answer; the fallback through
    model.generate (a repetition penalty) stops the same way."""
    model, tokenizer = tiny
    conversations = [task.prompt_messages(t) for t in tickets]
    for penalty in (None, 1.3):
        model.generation_config.repetition_penalty = penalty
        full = inference.generate_tokens(model, tokenizer, conversations, Decoding(4, 16, invalid_tail_tokens=3))
        cut = inference.generate_tokens(
            model, tokenizer, conversations, Decoding(4, 16, invalid_tail_tokens=3), json_answers=True
        )
        assert all(c == f[: len(c)] for c, f in zip(cut, full))
        assert sum(map(len, cut)) < sum(map(len, full))
        for c, f in zip(cut, full):
            texts = [tokenizer.decode(f[:n], skip_special_tokens=True) for n in range(1, len(f) + 1)]
            scan = inference.JsonScan()
            invalid = next((n for n, t in enumerate(texts, 1) if scan.read(t)), None)
            assert len(c) == (min(invalid + 3, len(f)) if invalid else len(f))
            assert evaluate.parse_answer(tokenizer.decode(f, skip_special_tokens=True)) is None  # noise
    model.generation_config.repetition_penalty = None


def test_common_prefix_length():
    # One helper for training and generation: every row keeps at least one token of its own.
    assert batches.common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2, 5]]) == 2
    assert batches.common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 1
    assert batches.common_prefix_length([[5, 1], [1, 5]]) == 0
    assert batches.common_prefix_length([[1, 2]]) == 1
    assert batches.common_prefix_length([]) == 0


def test_verdict_is_computed_from_intervals():
    def result(value, low, high):
        return scored.result({"json_valid": (value, low, high)})

    text = evaluate.verdict(
        {"base": result(0.0, 0.0, 0.05), "LoRA": result(0.9, 0.85, 0.95), "worse": result(0.02, 0.0, 0.1)},
        "base",
        ["json_valid"],
    )
    assert "LoRA beats base." in text and "better: json_valid 0.90 [0.85, 0.95] vs 0.00" in text
    assert "worse is not clearly better than base." in text


def test_metrics_table_rows(tickets, task):
    metrics = evaluate.score_answers([answer("outage", "high")], tickets[:1], task)
    rows = evaluate.metrics_table({"run": evaluate.EvaluationResult(metrics, HeldOut(1.1447, 3.14159, 1), [], 1)})
    assert {"run": "run", "metric": "perplexity", "value": 3.142, "low": None, "high": None} in rows


def test_confusion_matrix_and_macro_f1_on_known_answers():
    labels = ("a", "b")
    refs = [{"x": "a"}, {"x": "a"}, {"x": "b"}, {"x": "b"}]
    preds = ['{"x": "a"}', '{"x": "b"}', '{"x": "b"}', "not json"]
    columns, matrix = evaluate.confusion_matrix(preds, refs, "x", labels)
    assert columns == ["a", "b", "(invalid)"]
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 1]]
    # a: P=1, R=1/2 -> F1=2/3; b: P=1/2, R=1/2 -> F1=1/2
    assert evaluate.macro_f1(matrix) == pytest.approx((2 / 3 + 1 / 2) / 2)
    scored = evaluate.macro_f1_with_interval(preds, refs, "x", labels, n_resamples=200)
    assert scored.low <= scored.value <= scored.high


def test_score_answers_reports_macro_f1_per_label_field(tickets, task):
    metrics = evaluate.score_answers([answer(t["category"], t["urgency"]) for t in tickets], tickets, task)
    assert metrics["category_macro_f1"].value == 1.0 and metrics["urgency_macro_f1"].value == 1.0


def test_reference_labels_outside_the_schema_are_a_clear_error(tickets, task):
    bad = [dict(tickets[0], category="refund")]
    with pytest.raises(ValueError, match="reference category 'refund' \\(id a\\) is not one of"):
        evaluate.score_answers([answer("billing", "high")], bad, task)


def train_records():
    """Twelve solved tickets, three in each of four categories."""
    categories = ["outage", "account", "billing", "hardware"]
    return [
        {"id": f"t{i}", "ticket": f"ticket {i}", "category": categories[i % 4], "urgency": "low", "reply": f"reply {i}"}
        for i in range(12)
    ]


def test_few_shot_examples_are_diverse_seeded_and_complete(task):
    records = train_records() + [{"id": "no-reply", "ticket": "x", "category": "outage", "urgency": "low"}]
    picked = evaluate.few_shot_examples(records, task, k=3, seed=0)
    assert len(picked) == 3 and len({r["category"] for r in picked}) == 3
    assert evaluate.few_shot_examples(records, task, k=3, seed=0) == picked
    assert {r["category"] for r in evaluate.few_shot_examples(records, task, k=4, seed=1)} == {
        "outage",
        "account",
        "billing",
        "hardware",
    }
    six = evaluate.few_shot_examples(records, task, k=6, seed=2)
    assert max(sum(r["category"] == c for r in six) for c in {r["category"] for r in six}) == 2
    assert all("reply" in r for r in evaluate.few_shot_examples(records, task, k=12))  # incomplete record never picked
    with pytest.raises(ValueError, match="13 few-shot examples asked for, but only 12 training records"):
        evaluate.few_shot_examples(records, task, k=13)


def test_few_shot_conversation_is_instruction_then_pairs_then_the_real_question(tickets, task):
    shots = tickets[1:]
    messages = task.prompt_messages(tickets[0], shots)
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert messages[0]["content"] == task.instruction
    for index, shot in enumerate(shots):
        assert messages[1 + 2 * index]["content"] == shot["ticket"]
        assert messages[2 + 2 * index]["content"] == task.answer_text(shot)
    assert messages[-1] == {"role": "user", "content": tickets[0]["ticket"]}
    assert task.prompt_messages(tickets[0]) == [messages[0], messages[-1]]  # zero-shot is unchanged


def test_evaluate_model_prompts_with_the_few_shot_examples(tickets, task, monkeypatch):
    seen = []

    def fake_generate(model, tokenizer, conversations, decoding, json_answers):
        assert json_answers  # a JSON task: answers that can no longer parse stop early
        seen.extend(conversations)
        return [answer(t["category"], t["urgency"], t["reply"]) for t in tickets]

    monkeypatch.setattr(evaluate, "generate", fake_generate)
    shots = train_records()[:2]
    result = evaluate.evaluate_model(None, None, tickets, task, few_shot=shots)
    assert seen == [task.prompt_messages(t, shots) for t in tickets]
    assert result.few_shot == ["t0", "t1"]
    assert result.heldout is None  # the zero-shot row's perplexity already; not repeated
    monkeypatch.setattr(evaluate, "heldout_loss", lambda *args: pytest.fail("heldout=False computes no loss"))
    assert evaluate.evaluate_model(None, None, tickets, task, heldout=False).heldout is None
    assert result.metrics["labels_exact_match"].value == 1.0
    assert result.predictions[0].scores == evaluate.per_example_scores(
        result.predictions[0].prediction, tickets[0], task
    )


def comparison_results(base_scores, lora_scores):
    def run(scores, tag):
        return scored.result(
            predictions=[
                Prediction(f"e{i}", f"input {i}", {"category": "outage", "reply": "r"}, f"{tag} answer {i}", {"m": s})
                for i, s in enumerate(scores)
            ]
        )

    return {"base": run(base_scores, "base"), "LoRA": run(lora_scores, "lora")}


def test_sample_comparison_leads_with_the_best_runs_failures():
    results = comparison_results([0, 0, 0, 0, 0, 1], [1, 0, 1, 0.5, 1, 1])  # LoRA is the best run
    rows = evaluate.sample_comparison(results, n_best=2, n_worst=3, metric="m")
    assert [(row["case"], row["id"]) for row in rows] == [
        ("worst", "e1"),
        ("worst", "e3"),
        ("worst", "e0"),  # LoRA's lowest; among its 1.0s, where base disagrees
        ("disagree", "e2"),
        ("disagree", "e4"),
        ("best", "e5"),
    ]
    assert rows[0] == {
        "case": "worst",
        "id": "e1",
        "input": "input 1",
        "reference": '{"category":"outage","reply":"r"}',
        "base": "base answer 1",
        "base score": 0,
        "LoRA": "lora answer 1",
        "LoRA score": 0,
    }
    only_best = evaluate.sample_comparison(results, n_best=2, n_worst=1, n_disagree=0)  # default: mean of the scores
    assert [(row["case"], row["id"]) for row in only_best] == [("worst", "e1"), ("best", "e0"), ("best", "e2")]


def test_sample_comparison_refuses_mismatched_runs_or_a_missing_metric():
    results = comparison_results([0, 1], [1, 1])
    with pytest.raises(ValueError, match="no per-example metric 'rougeL'"):
        evaluate.sample_comparison(results, metric="rougeL")
    results["LoRA"].predictions.reverse()
    with pytest.raises(ValueError, match="not scored on the same examples in the same order"):
        evaluate.sample_comparison(results)


def test_metric_comparison_draws_each_interval_as_an_error_bar():
    import matplotlib.pyplot as plt
    from matplotlib.container import BarContainer

    from ftlib.lessons.plots import plot_metric_comparison

    results = {
        "base": scored.result({"a": (0.5, 0.4, 0.7)}),
        "LoRA": scored.result({"a": (0.9, 0.6, 0.8)}),
    }  # point estimate above its interval
    fig = plot_metric_comparison(results, ["a"])
    bars = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    segments = [container.errorbar.lines[2][0].get_segments()[0] for container in bars]
    assert [(float(s[0][1]), float(s[1][1])) for s in segments] == [(0.4, 0.7), (0.6, 0.9)]
    plt.close(fig)
