import copy

import pytest
import torch

from ftlib.core.config import Decoding
from ftlib.core.tasks import LISTINGS
from ftlib.data.batches import SupervisedDataset
from ftlib.measure import forgetting
from ftlib.measure.stats import Estimate

LISTING = {
    "id": "l1",
    "attributes": {"type": "flat", "city": "Leeds", "bedrooms": 2},
    "description": "A flat in Leeds with 2 bedrooms.",
}
GENERAL = [
    {"id": f"m{i}", "split": "mix", "kind": "advice", "prompt": f"question {i}?", "answer": f"answer {i}."}
    for i in range(3)
]


def probe_set():
    generic = [{"id": "g1", "prompt": "Why is the sky blue?"}, {"id": "g2", "prompt": "What is 2 + 2?"}]
    return forgetting.probes(generic, [LISTING], LISTINGS)


@pytest.mark.unit
def test_kl_is_zero_for_identical_models_and_positive_after_a_weight_moves(tiny):
    model, tokenizer = tiny
    same = copy.deepcopy(model)
    prompts = probe_set()
    report = forgetting.measure(
        model, same, tokenizer, prompts, [LISTING], LISTINGS, decoding=Decoding(max_new_tokens=8)
    )
    assert [d.kl for d in report.divergences] == pytest.approx([0.0] * 3, abs=1e-6)
    assert report.kl["all"].value == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        same.model.layers[0].mlp.down_proj.weight.add_(torch.randn_like(same.model.layers[0].mlp.down_proj.weight))
    moved = forgetting.measure(
        model, same, tokenizer, prompts, [LISTING], LISTINGS, decoding=Decoding(max_new_tokens=8)
    )
    assert all(d.kl > 1e-4 and d.kl_continuation > 1e-4 for d in moved.divergences)
    assert set(moved.kl) == {"generic", "listings", "all"} and moved.prompts["generic"] == 2
    assert moved.task == "listings" and "description_rougeL" in moved.task_scores
    assert [a["id"] for a in moved.task_answers] == ["l1"] and moved.task_answers[0]["base"] != ""


@pytest.mark.unit
def test_token_kl_matches_a_direct_computation(tiny):
    model, tokenizer = tiny
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.lm_head.weight.mul_(1.5)
    ids = tokenizer("hello there, friend", add_special_tokens=False)["input_ids"]
    kl, tail = forgetting.token_kl(model, other, ids, start=3)
    with torch.no_grad():
        p = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1], -1)
        q = torch.softmax(other(input_ids=torch.tensor([ids])).logits[0, :-1], -1)
    direct = (p * (p.log() - q.log())).sum(-1)
    assert kl == pytest.approx(float(direct.mean()), rel=1e-4)
    assert tail == pytest.approx(float(direct[2:].mean()), rel=1e-4)


@pytest.mark.unit
def test_an_estimate_brackets_the_mean():
    values = [0.1, 0.5, 0.2, 0.9, 0.05, 0.3, 0.4]
    stat = Estimate.of_mean(values)
    assert stat.low < stat.value < stat.high
    assert stat.value == pytest.approx(sum(values) / len(values))


@pytest.mark.unit
def test_report_rows_carry_every_source_and_task_metric_with_an_interval():
    stat = Estimate(0.1, 0.05, 0.2)
    score = Estimate(0.5, 0.4, 0.6)
    report = forgetting.ForgettingReport(
        "lora",
        [],
        {"generic": stat, "all": stat},
        {"generic": stat, "all": stat},
        {"generic": 2, "all": 2},
        "listings",
        {"description_rougeL": forgetting.PairedScores(score, score, score, 3)},
    )
    rows = report.rows()
    assert [r["measure"] for r in rows] == [
        "KL(base||tuned) per token, generic (n=2)",
        "KL(base||tuned) per token, all (n=2)",
        "listings description_rougeL (n=3)",
    ]
    assert rows[0]["95% CI"] == "[0.0500, 0.2000]" and rows[2]["tuned - base"] == "+0.5000 [+0.4000, +0.6000]"


@pytest.mark.unit
def test_mix_reaches_its_share_and_repeats_for_the_same_seed(tickets):
    train = tickets * 9  # 36 task records
    mixed = forgetting.mix_general(train, GENERAL, 0.1, seed=1)
    general = [r for r in mixed if "messages" in r]
    assert len(general) == 4  # round(0.1 * 36 / 0.9)
    assert len(general) / len(mixed) == pytest.approx(0.1)
    assert sorted(r["id"] for r in mixed if "ticket" in r) == sorted(r["id"] for r in train)
    assert forgetting.mix_general(train, GENERAL, 0.1, seed=1) == mixed
    assert forgetting.mix_general(train, GENERAL, 0.1, seed=2) != mixed
    counts = [sum(r["messages"][1]["content"] == g["answer"] for r in general) for g in GENERAL]
    assert sorted(counts) == [1, 1, 2]  # one full round of the 3, then one more: as even as 4 of 3 can be
    assert sorted(r["id"] for r in forgetting.mix_general(train, GENERAL, 0.0)) == sorted(r["id"] for r in train)
    with pytest.raises(ValueError, match="share"):
        forgetting.mix_general(train, GENERAL, 1.0)
    with pytest.raises(ValueError, match="none were given"):
        forgetting.mix_general(train, [], 0.2)


@pytest.mark.unit
def test_mixed_records_tokenize_under_the_ticket_task(tiny, tickets, task):
    _, tokenizer = tiny
    mixed = forgetting.mix_general(tickets * 9, GENERAL, 0.25, seed=0)
    dataset = SupervisedDataset(mixed, tokenizer, 4096, task, label_token_weight=10.0)  # byte tokens: long
    assert len(dataset) == len(mixed)  # every general pair keeps its answer tokens as labels


@pytest.mark.unit
def test_the_committed_generic_prompts_split_into_measure_and_mix_without_overlap():
    measure, mix = forgetting.read_generic("measure"), forgetting.read_generic("mix")
    assert len(measure) == 40 and len(mix) == 20
    assert not {r["prompt"] for r in measure} & {r["prompt"] for r in mix}
    assert all(r["answer"].strip() for r in measure + mix)
