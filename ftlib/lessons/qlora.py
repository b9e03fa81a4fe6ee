"""Lesson 04, QLoRA against LoRA: the QLoRA run this machine can afford, compared with lesson 03's LoRA run at equal
steps, and the full-budget pair measured beforehand."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ftlib.core.config import TrainConfig
from ftlib.lessons.sweeps import FULL_BUDGET_METRICS, FULL_BUDGET_RESULTS, MeasuredVariant, full_budget_variants
from ftlib.measure.stats import compare

# Steps after which lesson 04's QLoRA run stops where the profile's full budget does not fit the course's time (the
# schedule stays the full run's: TrainConfig.stop_after_steps). The cpu profile's 290 steps took 1,260 s of QLoRA
# training on one 2-core machine (2026-12-07), which left `make curriculum` at 86 minutes against its 60; on a
# slower one, 80 steps took 870 s. 80 steps are two of lesson 03's validation points (every 40 steps), enough to
# compare the two curves where both exist; the full-budget pair comes from the committed results (FULL_BUDGET_PAIR).
REPRODUCTION_STEPS = {"cpu": 80}
# The `make curriculum` run of 2026-12-03 (the cpu profile's defaults, 290 steps each): its LoRA and QLoRA runs,
# scored on the generated test split and the field test (benchmarks/results/quality_variants.json).
FULL_BUDGET_PAIR = "curriculum-2026-12-03-boundary-banks"


@dataclass(frozen=True)
class QLoraRun:
    """The QLoRA run lesson 04 trains here: its config, and whether it repeats only the start of the full budget."""

    config: TrainConfig

    @property
    def reproduction(self) -> bool:
        return self.config.stop_after_steps is not None

    def sentence(self) -> str:
        c = self.config
        if not self.reproduction:
            steps = f"{c.max_steps} steps of {c.batch_size} x {c.grad_accum}"
            return f"QLoRA at the profile's full budget: {steps}, as lesson 03's LoRA run."
        return (
            f"QLoRA for the first {c.stop_after_steps} of the profile's {c.max_steps} steps of {c.batch_size} x"
            f" {c.grad_accum}, on the same learning-rate schedule as lesson 03's LoRA run, so both have seen the same"
            " batches at the same rates when this run stops: the full budget takes"
            f" {c.max_steps / c.stop_after_steps:.1f} x as long. The curves below compare QLoRA with LoRA on the steps"
            " both ran; the full-budget pair, measured beforehand, is at the end of the lesson."
        )


def lesson_run(profile, plan=None, max_steps: int | None = None) -> QLoraRun:
    """The QLoRA run of lesson 04 on ``profile``: the full budget on a GPU plan, where the user set ``max_steps``
    (the notebook parameter) or where the profile has no reproduction size; else the profile's run stopped after
    ``REPRODUCTION_STEPS[profile.name]`` steps (``TrainConfig.stop_after_steps``: the schedule is the full run's)."""
    config = profile.train_config()
    steps = REPRODUCTION_STEPS.get(profile.name)
    if max_steps or plan is not None or steps is None or config.max_steps is None or steps >= config.max_steps:
        return QLoraRun(config)
    return QLoraRun(replace(config, stop_after_steps=steps))


def up_to_step(histories: dict[str, dict], last_step: int) -> dict[str, dict]:
    """Each loss history cut to the steps up to ``last_step``, so runs of different lengths plot on one axis."""
    return {
        name: {kind: [p for p in points if p["step"] <= last_step] for kind, points in history.items()}
        for name, history in histories.items()
    }


def full_budget_pair(task_name: str, name: str = FULL_BUDGET_PAIR) -> dict[str, MeasuredVariant]:
    """The committed LoRA and QLoRA runs of one full-budget results entry, by method; empty for another task than
    support_tickets (the only one measured at the full budget) or when the file lacks the entry."""
    if task_name != "support_tickets" or not FULL_BUDGET_RESULTS.exists():
        return {}
    return {v.method: v for v in full_budget_variants() if v.name == name}


def full_budget_rows(pair: dict[str, MeasuredVariant]) -> list[dict]:
    """One row per method: steps, training time and both test sets' label accuracies with their 95% intervals."""
    rows = []
    for method, v in pair.items():
        row = {"method": method, "steps": v.steps if v.steps is not None else "-"}
        row["train s"] = round(v.train_seconds) if v.train_seconds is not None else "-"
        rows.append(row | v.accuracy_columns())
    return rows


def full_budget_sentence(pair: dict[str, MeasuredVariant]) -> str:
    """QLoRA against LoRA at the full budget, read from the intervals: higher, lower or within noise per label."""
    if not pair:
        return "The full-budget pair was measured on support_tickets only: run this lesson with that dataset to see it."
    if set(pair) != {"lora", "qlora"}:
        return f"The results file has no LoRA and QLoRA pair named {FULL_BUDGET_PAIR!r}."
    q, lo = pair["qlora"], pair["lora"]
    verdicts = []
    for test_set, scores in (("field test", "field"), ("generated test", "generated")):
        parts = [
            f"{m.removesuffix('_accuracy')} {compare(getattr(q, scores)[m], getattr(lo, scores)[m])}"
            for m in FULL_BUDGET_METRICS
        ]
        verdicts.append(f"{test_set}: " + ", ".join(parts))
    return f"QLoRA against LoRA at {q.steps} steps each, by their 95% intervals: " + "; ".join(verdicts) + "."
