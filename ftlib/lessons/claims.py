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
from ftlib.measure.stats import Estimate, examples_to_decide, seeds_mean

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
    to_decide: str = ""  # for "not decided": about how big a test would decide it


def judge_difference(advantage: Estimate, margin: float) -> str:
    """supported / contradicted / not decided, for ``advantage``: the claimed side minus the other, signed so that
    the claim says it is positive."""
    if advantage.low > 0:
        return "supported"
    if advantage.high < 0 or (advantage.low >= -margin and advantage.high <= margin):
        return "contradicted"
    return "not decided at this size"


@dataclass(frozen=True)
class Comparison:
    """Two experiments of the reference run, ticket by ticket: does ``better`` beat ``worse`` on ``metric``?

    Seeds pair the runs (the same seed draws the same data order and initial adapter); every seed both
    experiments ran is used, and the interval holds seed noise and ticket noise (``stats.seeds_mean``).
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
            return Verdict("not run yet", "-", where)
        better = _table(entries, self.better, seeds, self.set, self.metric)
        worse = _table(entries, self.worse, seeds, self.set, self.metric)
        advantage = seeds_mean(better - worse)
        measured = (
            f"{_metric_text(self.metric)}: {better.mean():.3f} against {worse.mean():.3f}, "
            f"difference {advantage.value:+.3f} [{advantage.low:+.3f}, {advantage.high:+.3f}]"
        )
        where += f", {SETS[self.set]} ({better.shape[1]} tickets), seed{'s' if len(seeds) > 1 else ''} " + ", ".join(
            map(str, seeds)
        )
        verdict = judge_difference(advantage, self.margin)
        to_decide = examples_to_decide(advantage, better.shape[1], self.margin)
        return Verdict(verdict, measured, where, _size_text(to_decide, "tickets", verdict, len(seeds)))


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
        return Verdict(verdict, measured, where, _size_text(to_decide, self.unit, verdict))


@dataclass(frozen=True)
class BarTest:
    """Does an experiment of the reference run meet the task's success bar? The claim says it cannot: contradicted
    when every bar metric's interval lies at or above its threshold, supported when one lies wholly below."""

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
        parts, calls, needed = [], [], []
        for metric, threshold in self.bar:
            table = _table(entries, self.experiment, seeds, self.set, metric)
            estimate = seeds_mean(table)
            call = estimate.verdict(threshold)  # yes / no / unclear
            calls.append(call)
            parts.append(f"{_metric_text(metric)} {estimate.text(3)} (bar {threshold:g}: {call})")
            if call == "unclear":
                needed.append(
                    examples_to_decide(
                        Estimate(estimate.value - threshold, estimate.low - threshold, estimate.high - threshold),
                        table.shape[1],
                        0.0,
                    )
                )
        where += f", {SETS[self.set]}, seed{'s' if len(seeds) > 1 else ''} " + ", ".join(map(str, seeds))
        verdict = (
            "contradicted"
            if all(c == "yes" for c in calls)
            else "supported"
            if "no" in calls
            else "not decided at this size"
        )
        size = max((n for n in needed if n is not None), default=None)
        return Verdict(
            verdict, "SmolLM2-135M + LoRA: " + "; ".join(parts), where, _size_text(size, "tickets", verdict, len(seeds))
        )


@dataclass(frozen=True)
class RangeTest:
    """Does a measured figure fall in the claim's range? supported when its interval lies inside, contradicted when
    it lies wholly outside, not decided when it straddles an edge."""

    results: Path
    path: tuple[str, ...]  # keys to a {mean|value, low, high} entry
    label: str
    low: float
    high: float
    examples: int  # how many repeats the interval rests on
    unit: str = "rounds"
    transform: str = ""  # "saving": the entry is a cost ratio r (other / ours) and the figure is 1 - 1/r
    note: str = ""

    def run(self) -> Verdict:
        entries = _read(self.results)
        where = _file(self.results) + (f" ({self.note})" if self.note else "")
        try:
            raw = _dig(entries, self.path)
        except KeyError:
            return Verdict("not run yet", "-", where)
        figure = _estimate(raw)
        if self.transform == "saving":  # a ratio r = other / ours costs 1 - 1/r less; the order is kept
            figure = Estimate(*(1 - 1 / v for v in (figure.value, figure.low, figure.high)))
        inside = self.low <= figure.low and figure.high <= self.high
        outside = figure.high < self.low or figure.low > self.high
        verdict = "supported" if inside else "contradicted" if outside else "not decided at this size"
        measured = f"{self.label}: {figure.value:.0%} [{figure.low:.0%}, {figure.high:.0%}]"
        to_decide = ""
        if verdict == "not decided at this size":
            half = (figure.high - figure.low) / 2
            edge = min(abs(figure.value - self.low), abs(figure.value - self.high))
            if edge > 0:
                to_decide = f"about {math.ceil(self.examples * (half / edge) ** 2)} {self.unit}"
        return Verdict(verdict, measured, where, to_decide)


@dataclass(frozen=True)
class Claim:
    """One claim of the source articles, as the ledger lists it."""

    claim: str  # the claim in one line
    figure: str  # the articles' figure, quoted as the course's issues quote it
    test: Comparison | EstimateComparison | BarTest | RangeTest | None  # None: not measured
    why_not: str = ""  # not measured: why (a measured claim's test says what it holds equal in its note)
    fallback: Comparison | EstimateComparison | BarTest | RangeTest | None = None  # an earlier, weaker measurement
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
        "About 1,000 good examples is the threshold: far fewer fall well short.",
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
        EstimateComparison(
            FORGETTING,
            ("variants", "lora", "forgetting", "kl", "all"),
            ("variants", "full", "forgetting", "kl", "all"),
            "KL from the base, LoRA against full fine-tuning",
            examples=64,
            unit="prompts",
            lower_is_better=True,
            margin=0.02,
            note=FORGETTING_NOTE,
        ),
    ),
    Claim(
        "Mixing general data into training is the usual remedy for forgetting.",
        "mix in general data",
        EstimateComparison(
            FORGETTING,
            ("variants", "lora+mix", "forgetting", "kl", "all"),
            ("variants", "lora", "forgetting", "kl", "all"),
            "KL from the base, LoRA with 10% general data against without",
            examples=64,
            unit="prompts",
            lower_is_better=True,
            margin=0.02,
            note=FORGETTING_NOTE,
        ),
    ),
    Claim(
        "A fine-tuned small model cuts inference cost by 40-90% against a larger general model or a long prompt.",
        "40-90% cheaper",
        RangeTest(
            RESULTS / "inference_cost.json",
            ("repeated", "ratios", "base few-shot / tuned"),
            "saving of the tuned model's short prompt against the same base model with 3 shots",
            0.40,
            0.90,
            examples=3,
            transform="saving",
            note="3 timing rounds of 32 tickets, 2 threads; against a larger model the saving is only estimated",
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
            "verdict": verdict.verdict,
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
            "difference too small to matter (3 points of tickets, 0.02 nats). *Not decided at this size*: the "
            "interval straddles; the last column says about how big a test would decide it if the measured "
            "difference held. *Not run yet*: the reference run (`benchmarks/reference_run.py`) has not reached "
            "that experiment.",
            "",
            "Quality is read on the field test's test half: hand-written tickets that nothing was chosen on. "
            "Between seeds, the interval resamples the seeds too, so a difference that one seed shows and the "
            "other does not stays undecided.",
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


def _table(entries: dict, experiment: str, seeds: list[int], set_name: str, metric: str) -> np.ndarray:
    """(seeds x tickets) 0/1 scores of one metric: each seed's trained method, ticket by ticket."""
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
        rows.append([float(flag) for flag in kept["scores"][metric]])
    return np.asarray(rows)


def _metric_text(metric: str) -> str:
    return {"labels_exact_match": "both labels right"}.get(metric, metric.replace("_", " "))


def _size_text(needed: int | None, unit: str, verdict: str, seeds: int = 1) -> str:
    if verdict != "not decided at this size" or needed is None:
        return ""
    more = " (and more seeds: the seed-to-seed spread does not shrink with tickets)" if seeds > 1 else ""
    return f"about {needed:,} {unit}{more}"


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
