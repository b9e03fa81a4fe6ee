"""The claims ledger: verdicts computed from intervals, read from results files the way the benchmarks write them."""

import json

import numpy as np
import pytest

from ftlib.lessons import claims as ledger_module
from ftlib.lessons.claims import (
    CLAIMS,
    LEDGER_PAGE,
    VERDICTS,
    BarTest,
    Claim,
    Comparison,
    EstimateComparison,
    PairedListComparison,
    RangeTest,
    counts,
    judge_difference,
    ledger,
    ledger_markdown,
)
from ftlib.measure.stats import Estimate, examples_to_decide, seeds_mean

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------- statistics


def test_seeds_mean_of_one_seed_is_the_plain_bootstrap():
    row = (np.random.default_rng(3).random(149) < 0.8).astype(float)
    assert seeds_mean(row[None, :]) == Estimate.of_mean(list(row))


def test_seeds_that_disagree_widen_the_interval_beyond_the_tickets_alone():
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.7).astype(float)
    agree = np.stack([base, base])
    flipped = base.copy()
    flipped[:60] = 1 - flipped[:60]  # the second seed's model answers 60 tickets the other way
    disagree = np.stack([base, flipped])
    width = {name: seeds_mean(t).high - seeds_mean(t).low for name, t in (("agree", agree), ("disagree", disagree))}
    assert seeds_mean(disagree).value == pytest.approx(disagree.mean())
    assert width["disagree"] > 1.2 * width["agree"]


def test_seeds_mean_needs_a_table():
    with pytest.raises(ValueError, match="seeds x examples"):
        seeds_mean([0.0, 1.0])


def test_examples_to_decide_by_hand():
    # half-width 0.04 at 149 examples, difference 0.01, margin 0.03: leaving zero needs 149 x 4^2 = 2,384 examples;
    # fitting within +-0.03 needs 149 x (0.04 / 0.02)^2 = 596: the smaller decides
    assert examples_to_decide(Estimate(0.01, -0.03, 0.05), 149, 0.03) == 596
    assert examples_to_decide(Estimate(0.05, 0.01, 0.09), 149, 0.03) is None  # decided already
    assert examples_to_decide(Estimate(0.0, -0.01, 0.01), 149, 0.03) is None  # within the margin already
    assert examples_to_decide(Estimate(0.0, -0.05, 0.05), 100, 0.0) is None  # no difference, no margin: never


def test_judge_difference():
    assert judge_difference(Estimate(0.05, 0.01, 0.09), 0.03) == "supported"
    assert judge_difference(Estimate(-0.05, -0.09, -0.01), 0.03) == "contradicted"
    assert judge_difference(Estimate(0.0, -0.02, 0.02), 0.03) == "contradicted"  # too small to matter
    assert judge_difference(Estimate(0.01, 0.005, 0.015), 0.03) == "contradicted"  # sure, and still too small
    assert judge_difference(Estimate(0.02, -0.02, 0.06), 0.03) == "not decided at this size"


# ---------------------------------------------------------------- results files as the benchmarks write them


def entry(flags: dict[str, str], method: str = "lora") -> dict:
    """A reference-run entry as benchmarks/quality_bar.py writes it: per-example 0/1 strings on the test half."""
    n = len(next(iter(flags.values())))
    kept = {"metrics": {}, "examples": n, "per_example": {"ids": [f"f{i}" for i in range(n)], "scores": flags}}
    return {"results": {method: {"field_test": kept, "test": kept}}}


def write(tmp_path, entries: dict):
    path = tmp_path / "reference_runs.json"
    path.write_text(json.dumps(entries))
    return path


def ones(n: int, right: int) -> str:
    return "1" * right + "0" * (n - right)


def test_comparison_verdicts(tmp_path):
    n = 200
    path = write(
        tmp_path,
        {
            "good / seed 0": entry({"labels_exact_match": ones(n, 180)}),
            "good / seed 1": entry({"labels_exact_match": ones(n, 178)}),
            "bad / seed 0": entry({"labels_exact_match": ones(n, 120)}),
            "bad / seed 1": entry({"labels_exact_match": ones(n, 124)}),
            "same / seed 0": entry({"labels_exact_match": ones(n, 180)}),
            "same / seed 1": entry({"labels_exact_match": ones(n, 178)}),
            # right on tickets 6-182: 6 tickets only "good" gets, 3 only this one
            "one seed / seed 0": entry({"labels_exact_match": "0" * 6 + "1" * 177 + "0" * 17}),
        },
    )
    supported = Comparison("good", "bad", results=path).run()
    assert supported.verdict == "supported"
    assert "0.895 against 0.610" in supported.measured and "seeds 0, 1" in supported.where
    assert Comparison("bad", "good", results=path).run().verdict == "contradicted"
    same = Comparison("good", "same", results=path).run()
    assert same.verdict == "contradicted" and "+0.000 [+0.000, +0.000]" in same.measured  # no difference at all
    undecided = Comparison("good", "one seed", results=path).run()  # paired on seed 0 only: 6 against 3 tickets
    assert undecided.verdict == "not decided at this size" and "seed 0" in undecided.where
    assert undecided.to_decide.startswith("about 800 tickets (decides about half the time")
    assert Comparison("good", "never run", results=path).run().verdict == "not run yet"
    assert Comparison("good", "bad", results=tmp_path / "absent.json").run().verdict == "not run yet"


def test_an_entry_without_per_example_scores_is_a_clear_error(tmp_path):
    old = entry({"labels_exact_match": "1"})
    del old["results"]["lora"]["field_test"]["per_example"]
    path = write(tmp_path, {"a / seed 0": old, "b / seed 0": entry({"labels_exact_match": "1"})})
    with pytest.raises(ValueError, match="'a / seed 0' keeps no per-example scores"):
        Comparison("a", "b", results=path).run()


def test_bar_test(tmp_path):
    n = 600  # 600 of 600 valid is at least 0.9939 (Clopper-Pearson): 300 of 300 could not clear 0.99
    path = write(
        tmp_path,
        {
            "strong / seed 0": entry(
                {"json_valid": ones(n, n), "category_accuracy": ones(n, 594), "urgency_accuracy": ones(n, 570)}
            ),
            "weak / seed 0": entry(
                {"json_valid": ones(n, n), "category_accuracy": ones(n, 594), "urgency_accuracy": ones(n, 400)}
            ),
            "close / seed 0": entry(
                {"json_valid": ones(n, n), "category_accuracy": ones(n, 594), "urgency_accuracy": ones(n, 516)}
            ),
        },
    )
    assert BarTest("strong", results=path).run().verdict == "contradicted"  # a small model met the bar
    assert BarTest("weak", results=path).run().verdict == "supported"
    close = BarTest("close", results=path).run()
    assert close.verdict == "not decided at this size" and "unclear" in close.measured and close.to_decide


def test_estimate_comparison_lower_is_better(tmp_path):
    path = tmp_path / "forgetting.json"
    path.write_text(
        json.dumps(
            {
                "a": {"kl": {"value": 0.25, "low": 0.24, "high": 0.26, "prompts": 64}},
                "b": {"kl": {"value": 0.10, "low": 0.09, "high": 0.11}},
            }
        )
    )
    forgets_less = EstimateComparison(path, ("a", "kl"), ("b", "kl"), "KL", 64, lower_is_better=True, margin=0.02)
    found = forgets_less.run()
    assert found.verdict == "contradicted" and "advantage -0.150" in found.measured
    assert found.to_decide == "decided: the opposite, beyond noise"


def test_paired_lists_pair_by_id(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.random(64)
    a = [{"id": f"p{i}", "kl": float(v + 0.05)} for i, v in enumerate(base)]
    b = [{"id": f"p{i}", "kl": float(v)} for i, v in reversed(list(enumerate(base)))]  # another order, same ids
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"a": a, "b": b, "short": b[:10]}))
    found = PairedListComparison(path, ("b",), ("a",), "kl", "KL", lower_is_better=True, margin=0.02).run()
    # every prompt moved by exactly 0.05: paired, the interval has no width, whatever the prompts' spread
    assert found.verdict == "supported" and "advantage +0.050 [+0.050, +0.050], paired" in found.measured
    with pytest.raises(ValueError, match="other examples"):
        PairedListComparison(path, ("short",), ("a",), "kl", "KL").run()


def test_range_test_reads_rounds_with_a_t_interval(tmp_path):
    path = tmp_path / "cost.json"
    rounds = [{"ours": 0.5, "other": 1.0}, {"ours": 0.55, "other": 1.0}, {"ours": 0.45, "other": 1.0}]
    path.write_text(
        json.dumps({"rounds": rounds, "slower": [{"ours": 1.2, "other": 1.0}] * 2 + [{"ours": 1.3, "other": 1.0}]})
    )
    # savings 50%, 45%, 55%: mean 0.50, sd 0.05, half-width 4.303 x 0.05 / sqrt(3) = 0.124
    inside = RangeTest(path, ("rounds",), "ours", "other", "saving", 0.30, 0.90).run()
    assert inside.verdict == "supported" and "50% [38%, 62%] over 3 rounds" in inside.measured
    straddles = RangeTest(path, ("rounds",), "ours", "other", "saving", 0.40, 0.90).run()
    assert straddles.verdict == "not decided at this size" and "rounds" in straddles.to_decide
    negative = RangeTest(path, ("slower",), "ours", "other", "saving", 0.40, 0.90).run()  # ours costs more
    assert negative.verdict == "contradicted" and "-23%" in negative.measured
    assert RangeTest(path, ("missing",), "ours", "other", "saving", 0.4, 0.9).run().verdict == "not run yet"


def test_experiments_scored_on_other_tickets_are_not_compared(tmp_path):
    other = entry({"labels_exact_match": ones(20, 10)})
    other["results"]["lora"]["field_test"]["per_example"]["ids"] = [f"x{i}" for i in range(20)]
    path = write(tmp_path, {"a / seed 0": entry({"labels_exact_match": ones(20, 10)}), "b / seed 0": other})
    with pytest.raises(ValueError, match="scored other field_test tickets"):
        Comparison("a", "b", results=path).run()


def test_two_seeds_that_disagree_leave_it_undecided(tmp_path):
    n = 300
    path = write(
        tmp_path,
        {
            "a / seed 0": entry({"labels_exact_match": ones(n, 270)}),  # seed 0: +0.20 over b
            "a / seed 1": entry({"labels_exact_match": ones(n, 210)}),  # seed 1: no difference
            "b / seed 0": entry({"labels_exact_match": ones(n, 210)}),
            "b / seed 1": entry({"labels_exact_match": ones(n, 210)}),
            "c / seed 5": entry({"labels_exact_match": ones(n, 210)}),
        },
    )
    found = Comparison("a", "b", results=path).run()
    # each seed alone is decided (a paired +0.20 on 300 tickets; exactly 0); together they disagree
    assert found.verdict == "not decided at this size" and "(per seed: +0.200, +0.000)" in found.measured
    assert "more seeds too" in found.to_decide and found.seeds == 2 and found.shown() == found.verdict
    lonely = Comparison("a", "c", results=path).run()
    assert lonely.verdict == "not run yet" and "no seed run by both yet" in lonely.where


def test_bar_test_follows_the_metric_heading_below_and_bounds_a_perfect_score(tmp_path):
    n = 149
    path = write(
        tmp_path,
        {
            "m / seed 0": entry(
                {"json_valid": ones(n, n), "category_accuracy": ones(n, 144), "urgency_accuracy": ones(n, 124)}
            )
        },
    )
    found = BarTest("m", results=path).run()
    # 149 of 149 valid is at least 0.025^(1/149) = 0.9755: unclear against 0.99, not "yes"
    assert "json valid 1.000 [0.976, 1.000] (bar 0.99: unclear)" in found.measured
    assert found.verdict == "not decided at this size" and found.shown() == "not decided at this size (1 seed)"
    # urgency 0.832 heads below its 0.85 and decides the row alone: the smallest size, not category's larger one
    gap = Estimate.of_mean([1.0] * 124 + [0.0] * 25)
    expected = examples_to_decide(Estimate(gap.value - 0.85, gap.low - 0.85, gap.high - 0.85), n, 0.0)
    assert f"{expected:,}"[:2] == found.to_decide.removeprefix("about ")[:2]


# ---------------------------------------------------------------- the ledger itself


def test_every_claim_is_measured_or_says_why_not():
    for claim in CLAIMS:
        assert claim.claim and claim.figure
        if claim.test is None:
            assert claim.why_not, claim.claim


def test_every_verdict_is_one_of_the_five_and_the_counts_add_up():
    findings = ledger()
    assert {verdict.verdict for _, verdict in findings} <= set(VERDICTS)
    assert sum(counts(findings).values()) == len(CLAIMS)


def test_a_not_measured_claim_reads_as_such():
    (found,) = ledger((Claim("x", "y", None, "no way to measure it here"),))
    assert found[1].verdict == "not measured" and found[1].to_decide == "no way to measure it here"


def test_the_committed_ledger_page_is_what_the_committed_results_give():
    assert LEDGER_PAGE.read_text() == ledger_markdown(), (
        "docs/claims.md is stale: .venv/bin/python -m ftlib.lessons.claims --write docs/claims.md"
    )


def test_the_command_writes_the_page(tmp_path, capsys):
    assert ledger_module.main(["--write", str(tmp_path / "claims.md")]) == 0
    assert (tmp_path / "claims.md").read_text().startswith("# The claims ledger")


def test_a_fallback_is_read_only_while_the_reference_runs_are_missing(tmp_path):
    path = write(tmp_path, {"a / seed 0": entry({"labels_exact_match": ones(50, 50)})})
    earlier = tmp_path / "earlier.json"
    earlier.write_text(
        json.dumps({"x": {"value": 0.9, "low": 0.85, "high": 0.95}, "y": {"value": 0.5, "low": 0.45, "high": 0.55}})
    )
    fallback = EstimateComparison(earlier, ("x",), ("y",), "earlier", 100, note="one seed")
    pending = Claim("c", "f", Comparison("a", "b", results=path), fallback=fallback).check()
    assert pending.verdict == "supported" and "earlier.json" in pending.where and "one seed" in pending.where
    path.write_text(json.dumps({f"{e} / seed 0": entry({"labels_exact_match": ones(50, 25)}) for e in "ab"}))
    done = Claim("c", "f", Comparison("a", "b", results=path), fallback=fallback).check()
    assert done.verdict == "contradicted" and "reference_runs.json" in done.where  # the reference run, once there
