"""The claims ledger: what the source articles claim, what this course measured, and a verdict computed from it.

Each ``Claim`` is one line of the articles with its figure and, where the course measures it, the ``Test`` that
reads the committed results (``benchmarks/results/``). ``ledger()`` computes every verdict from those files:

- supported: the claim's direction holds beyond noise (the 95% interval of the difference leaves zero behind);
- contradicted: the opposite holds beyond noise, or the whole interval sits within the claim's margin, a
  difference too small to matter where the claim says it matters;
- not decided at this size: the interval straddles; ``to_decide`` says about how many tickets (or prompts, or
  rounds) would decide it if the measured difference held;
- not run yet: the experiment is in ``benchmarks/reference_run.py`` but its results are not committed;
- not measured: the course does not measure the claim, and ``why_not`` says why.

Verdicts come from intervals, never from a point value alone, and each names the file and entries it read.
``python -m ftlib.lessons.claims --write docs/claims.md`` writes the ledger page; a test checks that the committed
page is what the committed results give.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftlib.core.fileio import write_text
from ftlib.measure.evaluate import TASK_BARS
from ftlib.measure.stats import Estimate, examples_to_decide, paired_difference, seeds_mean

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
REFERENCE_RUNS = RESULTS / "reference_runs.json"  # benchmarks/reference_run.py: two seeds per experiment
LEDGER_PAGE = Path(__file__).resolve().parents[2] / "docs" / "claims.md"

VERDICTS = ("supported", "contradicted", "not decided at this size", "not run yet", "not measured")
SETS = {"field_test": "the field test's test half", "field_dev": "the field test's dev half", "test": "generated test"}


# ---------------------------------------------------------------- what a test reads and how it judges


@dataclass(frozen=True)
class Verdict:
    """What one test found."""

    verdict: str  # one of VERDICTS
    measured: str  # the figure with its interval, in words
    where: str  # the file and entries it came from
    to_decide: str = ""  # for "not decided": about how big a test would decide it; else why it is decided
    seeds: int | None = None  # training runs per side behind a reference-run verdict (None: another kind of file)

    def shown(self) -> str:
        """The verdict as the page shows it: with "(1 seed)" where a single training run per side stands behind it."""
        return self.verdict + (" (1 seed)" if self.seeds == 1 and self.verdict not in ("not run yet",) else "")


def judge_difference(advantage: Estimate, margin: float) -> str:
    """supported / contradicted / not decided, for ``advantage``: the claimed side minus the other, signed so that
    the claim says it is positive. An interval wholly within ``+-margin`` contradicts even when it leaves zero
    behind: the claim says the difference matters."""
    if advantage.low >= -margin and advantage.high <= margin:
        return "contradicted"  # whatever its sign, too small to matter: first, so a tiny sure gain is no support
    if advantage.low > 0:
        return "supported"
    if advantage.high < 0:
        return "contradicted"
    return "not decided at this size"


@dataclass(frozen=True)
class Comparison:
    """Two experiments of the reference run, ticket by ticket: does ``better`` beat ``worse`` on ``metric``?

    Seeds pair the runs (the same seed draws the same data order and initial adapter); every seed both
    experiments ran is used, and the interval resamples seeds and tickets (``stats.seeds_mean``): with two seeds
    the seed part is crude, so each seed's difference is shown beside it.
    """

    better: str  # the experiment the claim says does better
    worse: str
    metric: str = "labels_exact_match"  # both labels right: the routing the task exists for
    set: str = "field_test"  # the field test's test half: hand-written, never used to choose
    margin: float = 0.03  # the smallest difference that matters: 3 points of tickets routed right
    results: Path = REFERENCE_RUNS
    note: str = ""  # what the two experiments hold equal or not, where it is not obvious

    def run(self) -> Verdict:
        entries = _read(self.results)
        where = f"{_file(self.results)}: {self.better!r} against {self.worse!r}" + (
            f" ({self.note})" if self.note else ""
        )
        seeds = sorted(set(_seeds(entries, self.better)) & set(_seeds(entries, self.worse)))
        if not seeds:
            both_ran = _seeds(entries, self.better) and _seeds(entries, self.worse)
            return Verdict("not run yet", "-", where + (" (no seed run by both yet)" if both_ran else ""))
        better, ids = _table(entries, self.better, seeds, self.set, self.metric)
        worse, other_ids = _table(entries, self.worse, seeds, self.set, self.metric)
        if ids != other_ids:
            raise ValueError(f"{self.better!r} and {self.worse!r} scored other {self.set} tickets: no pairs to compare")
        advantage = seeds_mean(better - worse)
        per_seed = (
            ""
            if len(seeds) == 1
            else " (per seed: " + ", ".join(f"{d:+.3f}" for d in (better - worse).mean(axis=1)) + ")"
        )
        measured = (
            f"{_metric_text(self.metric)}: {better.mean():.3f} against {worse.mean():.3f}, "
            f"difference {advantage.value:+.3f} [{advantage.low:+.3f}, {advantage.high:+.3f}]{per_seed}"
        )
        where += f", {SETS[self.set]} ({better.shape[1]} tickets), seed{'s' if len(seeds) > 1 else ''} " + ", ".join(
            map(str, seeds)
        )
        verdict = judge_difference(advantage, self.margin)
        to_decide = examples_to_decide(advantage, better.shape[1], self.margin)
        size = _size_text(to_decide, "tickets", verdict, len(seeds), advantage, self.margin)
        return Verdict(verdict, measured, where, size, seeds=len(seeds))


@dataclass(frozen=True)
class EstimateComparison:
    """Two measured means, each with its own interval, from a results file that keeps no per-example scores: the
    difference's interval is taken as independent (half-widths added in quadrature), which is wider than a paired
    one would be."""

    results: Path
    better_path: tuple[str, ...]  # keys to the claimed-better Estimate in the file
    worse_path: tuple[str, ...]
    label: str  # what is compared, in words
    examples: int  # how many examples each interval rests on
    unit: str = "tickets"
    lower_is_better: bool = False
    margin: float = 0.03
    note: str = ""  # how the measurement differs from the reference run's (fewer seeds, steps)
    seeds: int = 1  # training runs per side behind each figure

    def run(self) -> Verdict:
        entries = _read(self.results)
        where = _file(self.results) + (f" ({self.note})" if self.note else "")
        try:
            better, worse = (_estimate(_dig(entries, path)) for path in (self.better_path, self.worse_path))
        except KeyError:
            return Verdict("not run yet", "-", where)
        sign = -1.0 if self.lower_is_better else 1.0
        half = math.hypot((better.high - better.low) / 2, (worse.high - worse.low) / 2)
        value = sign * (better.value - worse.value)
        advantage = Estimate(value, value - half, value + half)
        measured = (
            f"{self.label}: {better.text(3)} against {worse.text(3)}; advantage {advantage.value:+.3f} "
            f"[{advantage.low:+.3f}, {advantage.high:+.3f}]"
        )
        verdict = judge_difference(advantage, self.margin)
        to_decide = examples_to_decide(advantage, self.examples, self.margin)
        size = _size_text(to_decide, self.unit, verdict, self.seeds, advantage, self.margin)
        return Verdict(verdict, measured, where, size, seeds=self.seeds)


@dataclass(frozen=True)
class BarTest:
    """Does an experiment of the reference run meet the task's success bar? The claim says it cannot: contradicted
    when every bar metric's interval lies at or above its threshold, supported when one lies wholly below.

    A metric every ticket scored 1 (or 0) on gets the exact binomial (Clopper-Pearson) bound in place of the
    bootstrap's, which cannot leave a perfect score: 149 of 149 is at least 0.975, not 1.000, with 95% confidence.
    """

    experiment: str = "defaults"
    set: str = "field_test"
    results: Path = REFERENCE_RUNS
    bar: tuple[tuple[str, float], ...] = tuple(TASK_BARS["support_tickets"].items())

    def run(self) -> Verdict:
        entries = _read(self.results)
        where = f"{_file(self.results)}: {self.experiment!r}"
        seeds = _seeds(entries, self.experiment)
        if not seeds:
            return Verdict("not run yet", "-", where)
        parts, calls, below, above = [], [], [], []
        for metric, threshold in self.bar:
            table, _ = _table(entries, self.experiment, seeds, self.set, metric)
            estimate = _all_same_bound(seeds_mean(table), table)
            call = estimate.verdict(threshold)  # yes / no / unclear
            calls.append(call)
            parts.append(f"{_metric_text(metric)} {estimate.text(3)} (bar {threshold:g}: {call})")
            if call == "unclear":
                gap = Estimate(estimate.value - threshold, estimate.low - threshold, estimate.high - threshold)
                (below if gap.value < 0 else above).append(examples_to_decide(gap, table.shape[1], 0.0))
        where += f", {SETS[self.set]}, seed{'s' if len(seeds) > 1 else ''} " + ", ".join(map(str, seeds))
        verdict = (
            "contradicted"
            if all(c == "yes" for c in calls)
            else "supported"
            if "no" in calls
            else "not decided at this size"
        )
        # One metric heading below its bar decides the row alone, at the smallest such size; else every metric
        # must clear its bar, at the largest.
        below, above = [n for n in below if n is not None], [n for n in above if n is not None]
        size = min(below) if below else max(above, default=None)
        measured = "SmolLM2-135M + LoRA on this task: " + "; ".join(parts)
        return Verdict(verdict, measured, where, _size_text(size, "tickets", verdict, len(seeds)), seeds=len(seeds))


def _all_same_bound(estimate: Estimate, table: np.ndarray) -> Estimate:
    """``estimate`` with the Clopper-Pearson 95% bound where every score is 1 (or every one 0): (0.025)^(1/n)."""
    n = table.shape[1]  # tickets, not tickets x seeds: the seeds answer the same tickets
    if table.min() == table.max() == 1.0:
        return Estimate(1.0, 0.025 ** (1 / n), 1.0)
    if table.min() == table.max() == 0.0:
        return Estimate(0.0, 0.0, 1 - 0.025 ** (1 / n))
    return estimate


# Two-sided 95% Student t quantiles by the number of rounds (n - 1 degrees of freedom): a few timing rounds are too
# few for a bootstrap, and scipy is not a dependency of the course for one table.
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}


@dataclass(frozen=True)
class RangeTest:
    """Does a measured saving fall in the claim's range? Each timing round gives one saving, 1 - ours / other (the
    same round's seconds per ticket); the interval is the mean's Student t interval over the rounds. supported when
    it lies inside the range, contradicted when it lies wholly outside, not decided when it straddles an edge."""

    results: Path
    rounds_path: tuple[str, ...]  # keys to a list of rounds, each {setup: seconds per ticket}
    ours: str  # the setup the claim says is cheaper
    other: str
    label: str
    low: float
    high: float
    note: str = ""

    def run(self) -> Verdict:
        entries = _read(self.results)
        where = _file(self.results) + (f" ({self.note})" if self.note else "")
        try:
            rounds = _dig(entries, self.rounds_path)
            savings = np.array([1 - r[self.ours] / r[self.other] for r in rounds])
        except KeyError:
            return Verdict("not run yet", "-", where)
        if not 2 <= len(savings) <= max(T_975):
            raise ValueError(f"{self.results}: {len(savings)} rounds; this test reads 2 to {max(T_975)}")
        half = T_975[len(savings)] * savings.std(ddof=1) / np.sqrt(len(savings))
        figure = Estimate(float(savings.mean()), float(savings.mean() - half), float(savings.mean() + half))
        inside = self.low <= figure.low and figure.high <= self.high
        outside = figure.high < self.low or figure.low > self.high
        verdict = "supported" if inside else "contradicted" if outside else "not decided at this size"
        measured = (
            f"{self.label}: {figure.value:.0%} [{figure.low:.0%}, {figure.high:.0%}] over {len(savings)} rounds "
            "(per round: " + ", ".join(f"{v:.0%}" for v in savings) + ")"
        )
        to_decide = ""
        if verdict == "not decided at this size":
            edge = min(abs(figure.value - self.low), abs(figure.value - self.high))
            if edge > 0:  # the t quantile shrinks too: this over-counts a little
                needed = math.ceil(len(savings) * (half / edge) ** 2)
                to_decide = f"about {_round2(needed)} rounds (decides about half the time)"
        return Verdict(verdict, measured, where, to_decide)


@dataclass(frozen=True)
class PairedListComparison:
    """Two variants measured on the same examples, from per-example lists a results file keeps (each item an
    ``{"id": ..., value_key: ...}``): the difference example by example, with its bootstrap interval."""

    results: Path
    better_path: tuple[str, ...]  # keys to the claimed-better variant's list
    worse_path: tuple[str, ...]
    value_key: str
    label: str
    unit: str = "examples"
    lower_is_better: bool = False
    margin: float = 0.03
    note: str = ""
    seeds: int = 1  # training runs per side behind each list

    def run(self) -> Verdict:
        entries = _read(self.results)
        where = _file(self.results) + (f" ({self.note})" if self.note else "")
        try:
            better, worse = (
                {item["id"]: item[self.value_key] for item in _dig(entries, path)}
                for path in (self.better_path, self.worse_path)
            )
        except KeyError:
            return Verdict("not run yet", "-", where)
        if better.keys() != worse.keys():
            raise ValueError(f"{self.results}: the two variants were measured on other examples")
        ids = sorted(better)
        sign = -1.0 if self.lower_is_better else 1.0
        advantage = paired_difference([sign * better[i] for i in ids], [sign * worse[i] for i in ids])
        measured = (
            f"{self.label}: {np.mean([better[i] for i in ids]):.3f} against {np.mean([worse[i] for i in ids]):.3f} "
            f"(mean over {len(ids)} {self.unit}); advantage {advantage.value:+.3f} "
            f"[{advantage.low:+.3f}, {advantage.high:+.3f}], paired"
        )
        verdict = judge_difference(advantage, self.margin)
        to_decide = examples_to_decide(advantage, len(ids), self.margin)
        size = _size_text(to_decide, self.unit, verdict, self.seeds, advantage, self.margin)
        return Verdict(verdict, measured, where, size, seeds=self.seeds)


Test = Comparison | EstimateComparison | BarTest | RangeTest | PairedListComparison


@dataclass(frozen=True)
class Claim:
    """One claim of the source articles, as the ledger lists it."""

    claim: str  # the claim in one line
    figure: str  # the articles' figure, quoted as the course's issues quote it
    test: Test | None  # None: not measured
    why_not: str = ""  # not measured: why (a measured claim's test says what it holds equal in its note)
    fallback: Test | None = None  # an earlier, weaker measurement
    # read while ``test``'s runs are not done (its "where" says so)

    def check(self) -> Verdict:
        if self.test is None:
            return Verdict("not measured", "-", "-", self.why_not)
        found = self.test.run()
        if found.verdict == "not run yet" and self.fallback is not None:
            return self.fallback.run()
        return found


# ---------------------------------------------------------------- the claims

FORGETTING = RESULTS / "forgetting.json"
FORGETTING_NOTE = "one seed, 40 steps; KL from the base model in nats per token over 64 prompts outside the task"


def _forgetting(less: str, more: str, label: str, note: str = "") -> PairedListComparison:
    """The forgetting benchmark's per-prompt KL from the base: does variant ``less`` move less than ``more``?"""
    return PairedListComparison(
        FORGETTING,
        ("variants", less, "forgetting", "divergences"),
        ("variants", more, "forgetting", "divergences"),
        "kl",
        f"KL from the base per prompt, {label}",
        unit="prompts",
        lower_is_better=True,
        margin=0.02,
        note=FORGETTING_NOTE + (f"; {note}" if note else ""),
    )


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "Cleaning is non-negotiable: curated data beats the same data raw.",
        'cleaning (duplicates, PII, format, tokenization, length) is "non-negotiable"',
        Comparison(better="defaults", worse="raw data"),
    ),
    Claim(
        "A small clean set beats a much larger noisy one.",
        "1,000-5,000 clean examples beat 100,000 noisy ones",
        Comparison(
            better="512 examples",
            worse="raw data",
            note="at equal compute, 290 steps each; the raw set is 2,289 tickets, 4.5x the small one, not 100x",
        ),
    ),
    Claim(
        "About 1,000 good examples is the threshold: fewer fall short.",
        "~1,000 examples is the tipping point",
        Comparison(
            better="defaults",
            worse="512 examples",
            note="the defaults train on the whole curated split, 2,113 tickets; both 290 steps",
        ),
    ),
    Claim(
        "About 1,000 good examples is the threshold: far fewer (128) fall short.",
        "~1,000 examples is the tipping point",
        Comparison(better="defaults", worse="128 examples"),
    ),
    Claim(
        "Varied, representative data beats more of the same.",
        "diverse, representative data beats volume",
        Comparison(
            better="defaults",
            worse="narrow data",
            note="as many curated tickets, each problem put in 4 ways instead of the banks' 25 or so",
        ),
        fallback=EstimateComparison(
            RESULTS / "quality_variants.json",
            ("wider-banks-steps-290-w10", "results", "lora", "field_test", "metrics", "labels_exact_match"),
            ("steps-290-w10", "results", "lora", "field_test", "metrics", "labels_exact_match"),
            "both labels right, wider phrase banks against the first ones",
            examples=172,
            note="until the reference run's narrow-data runs: one seed each, 290 steps, the whole 172-ticket "
            "field test of the time",
        ),
    ),
    Claim(
        "PEFT learning rates belong between 1e-4 and 5e-5; higher ones hurt.",
        "learning rate 1e-4 to 5e-5 for PEFT",
        Comparison(better="lr 1e-4", worse="defaults", note="the course's default is 1e-3"),
    ),
    Claim(
        "Too many epochs overfit.",
        "more epochs than needed overfit (a warning, no figure)",
        Comparison(better="1 epoch", worse="3 epochs"),
    ),
    Claim(
        "Learning rate, epochs and batch size decide the result.",
        "the hyperparameters that matter",
        None,
        "learning rate and epochs are the two rows above; batch size was not varied: the cpu profile's memory "
        "and time fix it at 8",
    ),
    Claim(
        "Models under 3B parameters are too weak for real tasks.",
        "under 3B is too weak",
        BarTest(),
    ),
    Claim(
        "LoRA learns less than full fine-tuning.",
        "LoRA Learns Less and Forgets Less (Biderman et al., 2024)",
        Comparison(
            better="full fine-tune", worse="defaults", note="full fine-tuning at learning rate 5e-5; same steps"
        ),
    ),
    Claim(
        "PEFT reduces catastrophic forgetting: LoRA forgets less than full fine-tuning.",
        "PEFT reduces catastrophic forgetting",
        _forgetting(
            "lora",
            "full",
            "LoRA against full fine-tuning",
            "LoRA at learning rate 1e-3, full fine-tuning at 5e-5. KL measures how far the answers moved from the "
            "base, not lost ability: on the listings task LoRA's attribute coverage rose more than full "
            "fine-tuning's (the same file's task_scores)",
        ),
    ),
    Claim(
        "Mixing general data into training is the usual remedy for forgetting.",
        "mix in general data",
        _forgetting("lora+mix", "lora", "LoRA with 10% general data against without"),
    ),
    Claim(
        "A fine-tuned small model cuts inference cost by 40-90% against a larger general model or a long prompt.",
        "40-90% cheaper",
        RangeTest(
            RESULTS / "inference_cost.json",
            ("repeated", "rounds"),
            "tuned, zero-shot (adapter merged)",
            "base, 3-shot",
            "time per ticket saved by the tuned model (merged, as shipped) with a short prompt against the same "
            "base with 3 shots",
            0.40,
            0.90,
            note="32 tickets per round, 2 threads; against a larger model the saving is only estimated",
        ),
    ),
    Claim(
        "Without MLOps, most fine-tuned models lose performance within months.",
        'over 60% lose performance within six months; "15% degradation in three months"',
        None,
        "needs deployed models watched for months; lesson 07's drift is simulated (a later-period generator), so "
        "it shows the mechanism and the re-tuning loop, not the rate",
    ),
    Claim(
        "Define success metrics before training.",
        "define success first",
        None,
        "a practice, not a measurable effect: the course follows it (lesson 02 writes the bar before any training)",
    ),
    Claim(
        "Automatic metrics miss tone and subtle errors: keep humans in the loop.",
        "humans in the loop",
        None,
        "needs human raters; lesson 05's review sheet is where a team would measure it",
    ),
)


def ledger(claims: tuple[Claim, ...] = CLAIMS) -> list[tuple[Claim, Verdict]]:
    """Every claim with its computed verdict."""
    return [(claim, claim.check()) for claim in claims]


def counts(findings: list[tuple[Claim, Verdict]]) -> dict[str, int]:
    """How many claims got each verdict, in ``VERDICTS`` order."""
    found = [v.verdict for _, v in findings]
    return {name: found.count(name) for name in VERDICTS}


def ledger_rows(findings: list[tuple[Claim, Verdict]]) -> list[dict]:
    """The ledger as table rows."""
    return [
        {
            "claim": claim.claim,
            "articles' figure": claim.figure,
            "measured (95% interval)": verdict.measured,
            "verdict": verdict.shown(),
            "to decide / why not": verdict.to_decide,
            "where": verdict.where,
        }
        for claim, verdict in findings
    ]


def ledger_markdown(findings: list[tuple[Claim, Verdict]] | None = None) -> str:
    """The ledger page: how to read it, the counts, then the table."""
    from ftlib.lessons.lesson import markdown_table

    findings = ledger() if findings is None else findings
    tally = ", ".join(f"{n} {name}" for name, n in counts(findings).items())
    return "\n".join(
        [
            "# The claims ledger",
            "",
            "Each claim the course's source articles make, what this course measured, and a verdict computed from "
            "the measurement's 95% interval (`ftlib/lessons/claims.py`; this page is its output, "
            "`python -m ftlib.lessons.claims --write docs/claims.md`). *Supported*: the claim's direction holds "
            "beyond noise. *Contradicted*: the opposite holds beyond noise, or the whole interval lies within a "
            "difference too small to matter (3 points of tickets, 0.02 nats): the *to decide* column says which. "
            "*Not decided at this size*: the interval straddles; the *to decide* column gives about how big a test "
            "would just decide it if the measured difference held exactly (such a test decides about half the "
            "time; twice its size, most of the time). *Not run yet*: the reference run "
            "(`benchmarks/reference_run.py`) has not reached that experiment. A verdict marked *(1 seed)* rests "
            "on one training run per side.",
            "",
            "Quality is read on the field test's test half: 149 hand-written tickets that nothing was chosen on "
            "(the one row read from `quality_variants.json` is an earlier measurement on the whole field test of "
            "its time, until the reference run's narrow-data runs replace it). With two seeds, the interval "
            "resamples the seeds as well as the tickets, and each seed's difference is shown: two seeds show "
            "whether they agree, not a calibrated spread. Every verdict is about this task, this 135M model and "
            "this budget.",
            "",
            f"**{len(findings)} claims: {tally}.**",
            "",
            markdown_table(ledger_rows(findings)),
            "",
        ]
    )


# ---------------------------------------------------------------- reading the results files


def _file(path: Path) -> str:
    """A results file as the page names it: from the repository root when it lies inside."""
    root = RESULTS.parents[1]
    return f"`{path.relative_to(root)}`" if path.is_relative_to(root) else f"`{path}`"


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _dig(entries: dict, path: tuple[str, ...]) -> dict:
    node = entries
    for key in path:
        node = node[key]
    return node


def _estimate(saved: dict) -> Estimate:
    """An Estimate as a results file saved it (``value`` or ``mean``, ``low``, ``high``; other keys ignored)."""
    return Estimate(saved["value"] if "value" in saved else saved["mean"], saved["low"], saved["high"])


def _seeds(entries: dict, experiment: str) -> list[int]:
    """The seeds of ``experiment`` the reference run has finished (its entries are named ``"<exp> / seed <s>"``)."""
    prefix = f"{experiment} / seed "
    return sorted(int(name.removeprefix(prefix)) for name in entries if name.startswith(prefix))


def ticket_scores(saved: dict, name: str) -> list[float]:
    """One 0/1 score of every ticket of a set, as ``benchmarks/quality_bar.py`` keeps it (a string of 0s and 1s)."""
    return [float(flag) for flag in saved["per_example"]["scores"][name]]


def _table(entries: dict, experiment: str, seeds: list[int], set_name: str, metric: str) -> tuple[np.ndarray, list]:
    """(seeds x tickets) 0/1 scores of one metric, each seed's trained method ticket by ticket, and the tickets'
    ids (the same for every seed, or a ValueError)."""
    rows, ids = [], None
    for seed in seeds:
        name = f"{experiment} / seed {seed}"
        (result,) = [r for m, r in entries[name]["results"].items() if m != "base"]
        kept = result[set_name].get("per_example")
        if kept is None:
            raise ValueError(f"{name!r} keeps no per-example scores: rerun it with today's benchmarks/quality_bar.py")
        if ids is not None and kept["ids"] != ids:
            raise ValueError(f"{name!r} scored other {set_name} tickets than the seeds before it")
        ids = kept["ids"]
        rows.append(ticket_scores(result[set_name], metric))
    return np.asarray(rows), ids


def _metric_text(metric: str) -> str:
    return {"labels_exact_match": "both labels right"}.get(metric, metric.replace("_", " "))


def _size_text(
    needed: int | None, unit: str, verdict: str, seeds: int = 1, advantage: Estimate | None = None, margin: float = 0.0
) -> str:
    if verdict == "contradicted" and advantage is not None:
        return (
            f"decided: within +-{margin:g}, too small to matter"
            if -margin <= advantage.low and advantage.high <= margin
            else "decided: the opposite, beyond noise"
        )
    if verdict != "not decided at this size" or needed is None:
        return ""
    more = "; more seeds too, as tickets do not shrink the seed-to-seed spread" if seeds > 1 else ""
    return f"about {_round2(needed)} {unit} (decides about half the time; twice that, most of the time{more})"


def _round2(n: int) -> str:
    """``18,396`` as ``18,000``: two significant figures, all a rough size deserves."""
    digits = max(len(str(n)) - 2, 0)
    return f"{round(n, -digits):,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the claims ledger, or write its page.")
    parser.add_argument("--write", type=Path, help=f"write the page here (the repository's: {LEDGER_PAGE})")
    args = parser.parse_args(argv)
    page = ledger_markdown()
    if args.write:
        write_text(page, args.write)
        print(f"wrote {args.write}")
    else:
        print(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
