import pytest
from conftest import with_active_lora

from ftlib.core.config import Decoding, TrainConfig
from ftlib.engine.inference import generate
from ftlib.engine.models import load_model
from ftlib.measure import cost

MEASURED = cost.Measurement(
    "tuned, zero-shot",
    prompts=32,
    batch_size=16,
    mean_prompt_tokens=100.0,
    generated_tokens=1600,
    wall_seconds=40.0,
    cpu_seconds=36.0,
    threads=1,
)


@pytest.mark.unit
def test_per_ticket_and_per_1000_figures_come_from_the_measured_seconds():
    assert MEASURED.seconds_per_ticket == pytest.approx(1.25)  # 40 s / 32 tickets
    assert MEASURED.tokens_per_second == pytest.approx(40.0)  # 1600 tokens / 40 s
    assert MEASURED.generated_per_ticket == pytest.approx(50.0)
    assert MEASURED.cpu_seconds_per_1000 == pytest.approx(1125.0)  # 36 / 32 x 1000
    assert MEASURED.wall_seconds_per_1000 == pytest.approx(1250.0)
    assert MEASURED.usd_per_1000(0.04) == pytest.approx(1125.0 / 3600 * 0.04)


@pytest.mark.unit
def test_estimates_follow_their_formulas_and_are_labelled_estimates():
    scaled = cost.cpu_scaled_estimate(MEASURED, 1.35e8, ("big", 1.35e10, 2))
    assert scaled.seconds_per_1000 == pytest.approx(1125.0 * 100)
    assert scaled.kind == "estimate" and "assumed" in scaled.formula
    gpu = cost.GpuSpec("test gpu", memory_bandwidth=1e12, peak_flops=1e14, hour_usd=3.6, efficiency=0.5)
    estimate = cost.gpu_estimate(MEASURED, gpu, ("big", 1e9, 2))
    decode = 50 * 2e9 / (1e12 * 0.5) / 16  # tokens x bytes / effective bandwidth / batch
    prefill = 2 * 1e9 * 100 / (1e14 * 0.5)
    assert estimate.seconds_per_1000 == pytest.approx((decode + prefill) * 1000)
    assert estimate.usd_per_1000 == pytest.approx(estimate.seconds_per_1000 / 3600 * 3.6)
    report = cost.CostReport([MEASURED], [scaled, estimate])
    rows = report.rows()
    assert [row["kind"] for row in rows] == ["measured", "estimate", "estimate"]
    assert all("estimate" in row["USD per 1,000"] for row in rows)  # a dollar figure is never shown as measured
    assert rows[0]["CPU-s per 1,000"] == 1125.0 and rows[1]["formula"] == scaled.formula


@pytest.mark.unit
def test_merged_and_unmerged_adapters_give_identical_greedy_answers(tiny, tickets, task):
    model, tokenizer = tiny
    tuned = with_active_lora(model, TrainConfig(lora_r=4, lora_alpha=8))
    merged = cost.merged_copy(tuned)
    assert not hasattr(merged, "peft_config") and hasattr(tuned, "peft_config")  # the original keeps its adapter
    conversations = [task.prompt_messages(t) for t in tickets]
    unmerged_answers = generate(tuned, tokenizer, conversations, decoding=Decoding(2, 12))
    assert generate(merged, tokenizer, conversations, decoding=Decoding(2, 12)) == unmerged_answers
    with tuned.disable_adapter():  # the adapter does change the answers, so the equality above says something
        assert generate(tuned, tokenizer, conversations, decoding=Decoding(2, 12)) != unmerged_answers


@pytest.mark.unit
def test_measure_times_the_three_setups_on_the_tiny_model(tiny, tickets, task, cpu):
    model, tokenizer = tiny
    tuned = with_active_lora(model, TrainConfig(lora_r=4, lora_alpha=8))
    base, _ = load_model("tiny-random-llama", device=cpu)  # its own object: the LoRA wraps the other one
    report = cost.measure(tuned, base, tokenizer, tickets, task, tickets[:2], decoding=Decoding(2, 6))
    names = [m.name for m in report.measurements]
    assert names == ["tuned, zero-shot (adapter unmerged)", "base, 2-shot", "tuned, zero-shot (adapter merged)"]
    assert report.merged_identical == (4, 4)
    zero, few, _ = report.measurements
    assert few.mean_prompt_tokens > zero.mean_prompt_tokens  # the solved examples lengthen every prompt
    assert all(0 < m.generated_tokens <= 6 * 4 and m.wall_seconds > 0 for m in report.measurements)
    assert len(report.estimates) == 4 and all(e.kind == "estimate" for e in report.estimates)


@pytest.mark.unit
def test_repeated_passes_rotate_the_order_and_give_a_range_and_ratios(tiny, tickets, task, monkeypatch):
    model, tokenizer = tiny
    conversations = [task.prompt_messages(t) for t in tickets]
    calls = []
    real = cost.time_generation

    def spy(model, tokenizer, conversations, name, decoding):
        calls.append(name)
        return real(model, tokenizer, conversations, name, decoding)

    monkeypatch.setattr(cost, "time_generation", spy)
    setups = {"a": (model, conversations), "b": (model, conversations[:1]), "c": (model, conversations)}
    spreads, rounds = cost.repeated_passes(setups, tokenizer, repeats=3, decoding=Decoding(2, 4))
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each setup first once: no setup always first
    assert [list(r) for r in rounds] == [["a", "b", "c"]] * 3
    for name, spread in spreads.items():
        assert spread.seconds_per_ticket == [r[name] for r in rounds]
        low, high = spread.interval
        assert low <= spread.mean <= high and low > 0
    mean, low, high = cost.ratio_range(rounds, "b", "a")
    assert low <= mean <= high and mean == pytest.approx(sum(r["b"] / r["a"] for r in rounds) / 3)
    with pytest.raises(ValueError, match="repeats"):
        cost.repeated_passes(setups, tokenizer, repeats=0)
