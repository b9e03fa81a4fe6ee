"""Lesson 06, what moves the needle: clean vs raw data, training-set size, learning rate and rank, each measured
with 95% bootstrap intervals and summed up by a sentence computed from the numbers."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rouge_score import rouge_scorer

from ftlib.core.config import Decoding, TrainConfig
from ftlib.core.fileio import write_json
from ftlib.core.runtime import DeviceChoice, release_memory
from ftlib.core.tasks import Task
from ftlib.data.cleaning import scrub_pii
from ftlib.data.dedup import dedup_key
from ftlib.data.records import check_labels, validate_records
from ftlib.engine.inference import example_losses, generate
from ftlib.measure.evaluate import per_example_scores
from ftlib.measure.stats import Estimate, compare, mean_estimates, token_weighted_loss


@dataclass(frozen=True)
class LessonSizes:
    """Run lengths of lesson 06 for one profile; the batch, rank, learning rate and max_length come from it."""

    max_steps: int  # the step budget every run gets (a fixed budget: runs differ in one thing only)
    warmup_steps: int
    eval_steps: int
    n_val: int  # validation records: the loss curves, and the per-example loss with its interval
    n_test: int  # curated test records every run answers
    label_tokens: int  # max_new_tokens where only the labels are scored (they come first in a JSON answer)
    reply_tokens: int  # max_new_tokens where the reply is read too (clean vs raw: personal data in replies)
    train_sizes: tuple[int, ...]  # the learning curve's smaller training sets; the whole train split is added
    learning_rates: tuple[float, ...]  # besides the profile's own
    ranks: tuple[int, ...]  # besides the profile's own (lora_alpha = 2 x rank keeps the update's scale)


# Each notebook run trains 2 + len(train_sizes) + len(learning_rates) + len(ranks) adapters.
SIZES = {
    "smoke": LessonSizes(2, 0, 2, 8, 8, 16, 24, train_sizes=(8,), learning_rates=(), ranks=()),
    # 7 runs of 10 steps of 8 examples (80 examples seen per run). At 16 steps and 100 test tickets the notebook
    # took 680 s on 2 idle cores (a run: about 67 s of training, 23 s of scoring), which left `make curriculum`
    # at 65 minutes. At 10 steps and 80 tickets it took 894 s on a slower 2-core machine (2026-12-03), where the
    # unchanged lessons 03-05 ran 1.5-1.7x their 2026-11-29 times: about 18% saved. The learning curve's middle
    # size (64) is less than one budget, so it is seen in full at least once.
    "cpu": LessonSizes(10, 1, 5, 32, 80, 16, 48, (16, 64), (1e-4, 1e-2), (4,)),
    # Not measured: sized from the gpu profile (400 steps of 16 = 6,400 examples seen per run).
    "gpu": LessonSizes(400, 20, 50, 200, 300, 16, 96, (250, 500, 1000), (2e-5, 2e-3), (4, 64)),
}


def lesson_sizes(profile_name: str, max_steps: int | None = None) -> LessonSizes:
    """The sizes of ``profile_name`` (``max_steps``, the notebook parameter, overrides the step budget)."""
    sizes = SIZES[profile_name]
    if max_steps:
        sizes = replace(sizes, max_steps=max_steps, warmup_steps=min(sizes.warmup_steps, max_steps - 1))
    return sizes


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class RawSet:
    """The raw sample made just trainable: what was kept and why the rest went."""

    records: list[dict]
    read: int
    missing_fields: int  # a field of the task absent or not text: the trainer cannot read them
    label_outside_set: int  # the trainer refuses a label outside the spec's set
    held_out: int  # the same id or ticket text as a validation or test record: scoring on them would flatter

    def rows(self) -> list[dict]:
        return [
            {"records": "read", "count": self.read},
            {"records": "dropped: a field missing or not text", "count": self.missing_fields},
            {"records": "dropped: label outside the spec's set", "count": self.label_outside_set},
            {"records": "dropped: a validation or test record", "count": self.held_out},
            {"records": "kept (the raw training set)", "count": len(self.records)},
        ]


def raw_trainable(raw: list[dict], task: Task, held_out: list[dict]) -> RawSet:
    """The raw records with only what training needs: every field present as text and labels in the spec's set.

    Nothing else is cleaned: duplicates, markup, junk, other languages and personal data stay. Records that share
    an id or an input text with ``held_out`` (the curated validation and test splits) are dropped, so that the
    raw run is not scored on tickets it trained on.
    """
    valid, rejected = validate_records(list(raw), task, "<raw>")
    labelled, outside = check_labels(valid, task, "<raw>", drop=True)
    ids = {r.get("id") for r in held_out if r.get("id") is not None}
    texts = {dedup_key(task.input_text(r)) for r in held_out}
    kept = [r for r in labelled if r.get("id") not in ids and dedup_key(task.input_text(r)) not in texts]
    return RawSet(kept, len(raw), len(rejected), outside, len(labelled) - len(kept))


def subsets(records: list[dict], sizes: tuple[int, ...]) -> dict[int, list[dict]]:
    """The first ``n`` records for each size below ``len(records)``, and all of them: nested sets, so a larger
    one holds every example of a smaller one (the curated train split is already shuffled and stratified)."""
    chosen = sorted({n for n in sizes if 0 < n < len(records)} | {len(records)})
    return {n: records[:n] for n in chosen}


# ---------------------------------------------------------------- scoring


def answer_tokens(task: Task, sizes: LessonSizes, full: int, reply: bool = False) -> int:
    """``max_new_tokens`` for a run: short where the labels come first in a JSON answer and only they are scored,
    ``reply_tokens`` where the reply is read too, ``full`` (the profile's) for any other task."""
    labels_first = (
        task.answer_format == "json"
        and bool(task.label_fields)
        and tuple(task.answer_fields[: len(task.label_fields)]) == task.label_fields
    )
    if not labels_first:
        return full
    return sizes.reply_tokens if reply else sizes.label_tokens


def field_value(answer: str, name: str) -> str | None:
    """A string field of a JSON answer read with a pattern, so that a cut-off answer still gives its first fields."""
    match = re.search(rf'"{re.escape(name)}"\s*:\s*"((?:[^"\\]|\\.)*)', answer)
    return match.group(1) if match else None


def answer_scores(prediction: str, reference: dict, task: Task, rouge=None) -> dict[str, float]:
    """Per-example scores of a possibly cut-off answer.

    Label tasks: each label field's accuracy, all labels right, ``label_valid`` (every label present and in the
    spec's set), and ``reply_pii`` (1 when the free text the model wrote holds personal data, by
    ``ftlib.data.cleaning.scrub_pii``). Other tasks: ``ftlib.measure.evaluate.per_example_scores`` and ``reply_pii`` of
    the answer.
    """
    if not task.label_fields:
        scores = per_example_scores(prediction, reference, task, rouge)
        return scores | {"reply_pii": float(bool(scrub_pii(prediction)[1]))}
    scores, valid = {}, True
    for name, allowed in task.label_values.items():
        value = (field_value(prediction, name) or "").strip().lower()
        valid = valid and value in allowed
        if name in reference:
            scores[f"{name}_accuracy"] = float(value == str(reference[name]).strip().lower())
    if len(task.label_fields) > 1:
        scores["labels_exact_match"] = float(all(scores[f"{f}_accuracy"] for f in task.label_fields if f in reference))
    scores["label_valid"] = float(valid)
    free_text = " ".join(field_value(prediction, f) or "" for f in task.text_answer_fields)
    scores["reply_pii"] = float(bool(scrub_pii(free_text)[1]))
    return scores


# ---------------------------------------------------------------- runs


@dataclass
class Outcome:
    """One training run of the lesson and its scores on the shared validation and test records."""

    name: str
    n_train: int
    learning_rate: float
    lora_r: int
    max_steps: int
    history: dict  # ftlib.engine.train's {"train": [...], "val": [...]}
    val_loss: Estimate  # the kept checkpoint's validation loss with its interval
    metrics: dict[str, Estimate]  # test metrics with intervals
    predictions: list[dict] = field(default_factory=list)  # id, prediction and scores per test record
    folder: str = ""
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> Outcome:
        """An outcome as ``as_dict`` saved it."""
        fields = saved | {
            "val_loss": Estimate(**saved["val_loss"]),
            "metrics": {name: Estimate(**stat) for name, stat in saved["metrics"].items()},
        }
        return cls(**fields)


@dataclass
class Runner:
    """Trains and scores the lesson's runs, each into ``folder/<name>/``; identical runs are trained once."""

    base_model: str
    config: TrainConfig  # the shared configuration (the profile's, at the lesson's step budget)
    task: Task
    device: DeviceChoice
    folder: Path
    val: list[dict]
    test: list[dict]
    full_tokens: int  # max_new_tokens for tasks whose labels do not come first
    sizes: LessonSizes
    done: dict[tuple, Outcome] = field(default_factory=dict)

    @property
    def examples_per_step(self) -> int:
        """Examples one optimizer step sees: the micro-batch times gradient accumulation."""
        return self.config.batch_size * self.config.grad_accum

    def run(
        self, name: str, train_records: list[dict], data: str = "curated", reply: bool = False, **overrides
    ) -> Outcome:
        """Train on ``train_records`` with ``overrides`` of the shared config, then score on the test records.

        Args:
            data: a tag of the training data ("curated", "raw"): with the size and config, it says two runs are
                the same, and the second is not trained again.
            reply: generate long enough to read the reply (for personal data), not only the labels.
        """
        from ftlib.engine import train

        if "lora_r" in overrides:
            overrides.setdefault("lora_alpha", 2 * overrides["lora_r"])
        config = replace(self.config, **overrides)
        config.validate()
        tokens = answer_tokens(self.task, self.sizes, self.full_tokens, reply)
        # Greedy labels come first: a longer answer does not change them, so the key leaves max_new_tokens out.
        key = (data, len(train_records), config.learning_rate, config.lora_r, config.max_steps)
        if key in self.done:
            return replace(self.done[key], name=name)
        started = time.perf_counter()
        result = train.train(
            self.base_model,
            train_records,
            self.val,
            self.folder / name,
            config=config,
            task=self.task,
            device=self.device,
        )
        trained = time.perf_counter()
        val_loss = token_weighted_loss(
            example_losses(result.model, result.tokenizer, self.val, self.task, config.eval_batch_size)
        )
        answers = generate(
            result.model,
            result.tokenizer,
            [self.task.prompt_messages(r) for r in self.test],
            Decoding(config.eval_batch_size, tokens),
        )
        rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        rows = [answer_scores(a, r, self.task, rouge) for a, r in zip(answers, self.test)]
        outcome = Outcome(
            name,
            len(train_records),
            config.learning_rate,
            config.lora_r,
            config.max_steps,
            result.history,
            val_loss,
            mean_estimates(rows),
            [{"id": r.get("id"), "prediction": a, "scores": s} for r, a, s in zip(self.test, answers, rows)],
            str(self.folder / name),
            round(trained - started, 1),
            round(time.perf_counter() - trained, 1),
        )
        write_json(outcome.as_dict(), self.folder / name / "outcome.json")
        result.model = None
        del result
        release_memory()
        self.done[key] = outcome
        return outcome


def runner_for(lesson, sizes: LessonSizes) -> Runner:
    """The ``Runner`` of a ``ftlib.lessons.lesson.Lesson``: its profile's LoRA config at the lesson's step budget, the
    first ``sizes.n_val`` validation and ``sizes.n_test`` test records, runs under ``<run>/what_matters/runs/``."""
    config = lesson.profile.train_config(
        "lora", max_steps=sizes.max_steps, warmup_steps=sizes.warmup_steps, eval_steps=sizes.eval_steps
    )
    return Runner(
        lesson.profile.base_model,
        config,
        lesson.task,
        lesson.device,
        output_folder(lesson) / "runs",
        lesson.split("val")[: sizes.n_val],
        lesson.split("test")[: sizes.n_test],
        lesson.profile.decoding.max_new_tokens,
        sizes,
    )


def output_folder(lesson) -> Path:
    """Where lesson 06 writes: ``<run>/what_matters/``, beside (never inside) the other lessons' folders."""
    return lesson.paths.root / "what_matters"


def held_out_records(lesson) -> list[dict]:
    """Every curated validation and test record (not cut to the profile): what no raw training record may be."""
    from ftlib.data.records import read_jsonl

    lesson.split("test")  # rebuilds the splits when lesson 02 has not run here
    return [r for name in ("val", "test") for r in read_jsonl(lesson.paths.data / f"{name}.jsonl")]


def clean_vs_raw(runner: Runner, curated: list[dict], raw: list[dict]) -> dict[str, Outcome]:
    """The same run on the curated train split and on the raw records, replies generated long enough to read."""
    return {
        "curated": runner.run("curated", curated, reply=True),
        "raw": runner.run("raw", raw, data="raw", reply=True),
    }


def learning_curve(runner: Runner, curated: list[dict]) -> dict[int, Outcome]:
    """One run per training-set size (``runner.sizes.train_sizes`` and the whole set), same step budget."""
    return {
        n: runner.run("curated" if n == len(curated) else f"n{n}", records)
        for n, records in subsets(curated, runner.sizes.train_sizes).items()
    }


def rate_and_rank(runner: Runner, curated: list[dict]) -> tuple[dict[str, Outcome], dict[str, Outcome]]:
    """The learning-rate sweep (the config's rate and ``sizes.learning_rates``) and the rank sweep (its rank and
    ``sizes.ranks``), on the whole curated train split."""
    base = runner.config
    rates = sorted({base.learning_rate, *runner.sizes.learning_rates})
    ranks = sorted({base.lora_r, *runner.sizes.ranks})
    by_rate = {
        f"lr {rate:g}": runner.run(
            "curated" if rate == base.learning_rate else f"lr{rate:g}", curated, learning_rate=rate
        )
        for rate in rates
    }
    by_rank = {
        f"r {rank}": runner.run(
            "curated" if rank == base.lora_r else f"r{rank}",
            curated,
            **({} if rank == base.lora_r else {"lora_r": rank}),
        )
        for rank in ranks
    }
    return by_rate, by_rank


def save_outcomes(outcomes: dict[str, Outcome], path: str | Path) -> Path:
    """Every outcome of a section as one JSON file, written atomically."""
    return write_json({name: outcome.as_dict() for name, outcome in outcomes.items()}, path)


def read_outcomes(path: str | Path) -> dict[str, Outcome]:
    """A section's outcomes as ``save_outcomes`` wrote them (e.g. ``<run>/what_matters/clean_vs_raw.json``)."""
    import json

    return {name: Outcome.from_dict(saved) for name, saved in json.loads(Path(path).read_text()).items()}


# ---------------------------------------------------------------- tables and verdicts


def headline(task: Task) -> list[str]:
    """The metrics the lesson compares: labels and their validity, or the task's own for text answers."""
    if task.label_fields:
        return [f"{f}_accuracy" for f in task.label_fields] + ["label_valid"]
    return list(task.headline_metrics)


def main_metric(task: Task) -> str:
    """The one metric a section's sentence leads with: all labels right, a single label, or the task's first."""
    if len(task.label_fields) > 1:
        return "labels_exact_match"
    return f"{task.label_fields[0]}_accuracy" if task.label_fields else task.headline_metrics[-1]


def outcome_rows(outcomes: dict[str, Outcome], metrics: list[str], batch_size: int) -> list[dict]:
    """One row per run: its data size, epochs, rate, rank, validation loss and metrics, each with its interval."""
    rows = []
    for name, o in outcomes.items():
        row = {
            "run": name,
            "train examples": o.n_train,
            "epochs": round(o.max_steps * batch_size / max(o.n_train, 1), 2),
            "learning rate": f"{o.learning_rate:g}",
            "rank": o.lora_r,
            "val loss [95% CI]": o.val_loss.text(3),
        }
        row |= {m: o.metrics[m].text() for m in metrics if m in o.metrics}
        rows.append(row)
    return rows


def loss_verdict(a: Outcome, b: Outcome) -> str:
    """``a``'s validation loss against ``b``'s in words: ``lower (better)``, ``higher (worse)`` or ``within noise``."""
    verdict = compare(a.val_loss, b.val_loss)
    return {"lower": "lower (better)", "higher": "higher (worse)"}.get(verdict, verdict)


def clean_vs_raw_sentence(clean: Outcome, raw: Outcome, task: Task) -> str:
    """What the clean-vs-raw comparison shows, read from the intervals: the labels (or the task's metric), the
    validation loss, every headline metric and personal data in replies."""
    main = main_metric(task)
    verdict = compare(raw.metrics[main], clean.metrics[main])
    summary = {
        "lower": "the curated data gave clearly better answers",
        "higher": "the raw data gave clearly better answers",
    }.get(verdict, "no difference this test set can resolve")
    details = "; ".join(
        f"{m} {raw.metrics[m].text()} vs {clean.metrics[m].text()}: {compare(raw.metrics[m], clean.metrics[m])}"
        for m in dict.fromkeys([*headline(task), "reply_pii"])
        if m in raw.metrics and m in clean.metrics
    )
    leaked = sum(o.metrics["reply_pii"].value for o in (raw, clean) if "reply_pii" in o.metrics)
    pii = (
        "Neither model wrote personal data into a reply."
        if leaked == 0
        else "Some replies hold personal data: reply_pii above is their share."
    )
    return (
        f"Raw ({raw.n_train} examples) vs curated ({clean.n_train}), same {clean.max_steps} steps: on {main}"
        f" ({raw.metrics[main].text()} vs {clean.metrics[main].text()}), {summary}. The raw run's"
        f" validation loss is {loss_verdict(raw, clean)} ({raw.val_loss.text(3)} vs"
        f" {clean.val_loss.text(3)}). Raw vs curated, metric by metric: {details}. {pii}"
    )


def learning_curve_sentence(outcomes: dict[str, Outcome], task: Task, batch_size: int) -> str:
    """Where the learning curve stops improving: the smallest size within noise of the best, by the main metric
    and by the validation loss. ``batch_size``: examples per optimizer step."""
    metric = main_metric(task)
    ordered = sorted(outcomes.values(), key=lambda o: o.n_train)
    best = max(ordered, key=lambda o: o.metrics[metric].value)
    enough = next(o for o in ordered if compare(o.metrics[metric], best.metrics[metric]) != "lower")
    lowest = min(ordered, key=lambda o: o.val_loss.value)
    enough_loss = next(o for o in ordered if compare(o.val_loss, lowest.val_loss) != "higher")
    seen = ordered[0].max_steps * batch_size

    def finding(what: str, first: Outcome, top: Outcome) -> str:
        if first is ordered[0]:
            return f"{what}: every size, down to {first.n_train} examples, is within noise of the best ({top.n_train})"
        return f"{what}: from {first.n_train} examples on, within noise of the best ({top.n_train}); fewer are worse"

    points = ", ".join(f"{o.n_train}: {o.metrics[metric].text()} / loss {o.val_loss.text(3)}" for o in ordered)
    return (
        f"By training-set size ({metric} / validation loss, {points}). {finding(metric, enough, best)}."
        f" {finding('Validation loss', enough_loss, lowest)}. Every run saw {seen} examples"
        f" ({ordered[0].max_steps} steps of {batch_size}), so a set larger than {seen} is never seen in full here:"
        f" these runs cannot test a tipping point above {seen} examples."
    )


def _spread(outcomes: dict[str, Outcome], metric: str, label) -> tuple[str, float, float]:
    """A sentence on the best and worst of a sweep, and the gaps (0 where within noise) of metric and loss."""
    ordered = sorted(outcomes.values(), key=lambda o: -o.metrics[metric].value)
    best, worst = ordered[0], ordered[-1]
    real = compare(best.metrics[metric], worst.metrics[metric]) == "higher"
    by_loss = sorted(outcomes.values(), key=lambda o: o.val_loss.value)
    low, high = by_loss[0], by_loss[-1]
    loss_real = compare(low.val_loss, high.val_loss) == "lower"
    text = (
        f"{metric} is highest at {label(best)} ({best.metrics[metric].text()}) and lowest at {label(worst)}"
        f" ({worst.metrics[metric].text()}): {'a real gap' if real else 'within noise'}; the validation loss"
        f" is lowest at {label(low)} ({low.val_loss.text(3)}) and highest at {label(high)}"
        f" ({high.val_loss.text(3)}): {'a real gap' if loss_real else 'within noise'}"
    )
    metric_gap = best.metrics[metric].value - worst.metrics[metric].value if real else 0.0
    loss_gap = high.val_loss.value - low.val_loss.value if loss_real else 0.0
    return text, metric_gap, loss_gap


def sweep_sentence(by_rate: dict[str, Outcome], by_rank: dict[str, Outcome], task: Task) -> str:
    """Which learning rate and rank did best, whether the gaps are beyond noise, and which of the two moved the
    result more (by the main metric where either gap is real, else by the validation loss)."""
    metric = main_metric(task)
    if len(by_rate) < 2:
        only = next(iter(by_rate.values()))
        return f"{metric}: one learning rate ({only.learning_rate:g}) and one rank in this profile: nothing to compare."
    rates, rate_gap, rate_loss = _spread(by_rate, metric, lambda o: f"learning rate {o.learning_rate:g}")
    sentence = f"Learning rate: {rates}."
    if len(by_rank) > 1:
        ranks, rank_gap, rank_loss = _spread(by_rank, metric, lambda o: f"rank {o.lora_r}")
        sentence += f" Rank: {ranks}."
        what, rate_moved, rank_moved = (
            (metric, rate_gap, rank_gap) if rate_gap or rank_gap else ("the validation loss", rate_loss, rank_loss)
        )
        if rate_moved > rank_moved:
            sentence += f" Here the learning rate moved {what} more than the rank did."
        elif rank_moved > rate_moved:
            sentence += f" Here the rank moved {what} more than the learning rate did."
        else:
            sentence += " Neither the learning rate nor the rank moved the result beyond noise here."
    return sentence


def chance_note(outcomes: dict[str, Outcome], task: Task) -> str:
    """Which runs label no better than guessing (1 / number of labels, inside the interval): where the step budget
    was too short for the labels, and the validation loss is the figure that moved."""
    if not task.label_fields:
        return ""
    field_name = task.label_fields[0]
    chance = 1 / len(task.label_values[field_name])
    metric = f"{field_name}_accuracy"
    unique: dict[str, tuple[str, Outcome]] = {}  # a run shared by several sections counts once, by its folder
    for name, o in outcomes.items():
        unique.setdefault(o.folder or name, (name, o))
    outcomes = dict(unique.values())
    guessing = [name for name, o in outcomes.items() if o.metrics[metric].low <= chance <= o.metrics[metric].high]
    if not guessing:
        return f"Every run labels {field_name} better than guessing (1/{len(task.label_values[field_name])})."
    return (
        f"{len(guessing)} of {len(outcomes)} runs label {field_name} no better than guessing"
        f" (1/{len(task.label_values[field_name])} = {chance:.2f} inside the interval: {', '.join(guessing)}):"
        " at this step budget the labels are barely learned, and the validation loss is the figure that moved."
    )


# ---------------------------------------------------------------- the full budget, measured beforehand

# Written by ``benchmarks/quality_bar.py --output``: one entry per variant, each trained at the cpu profile's full
# budget (hundreds of steps) and scored on the generated test split and the hand-written field test.
FULL_BUDGET_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "quality_variants.json"
FULL_BUDGET_METRICS = ("category_accuracy", "urgency_accuracy")
# The cpu profile's defaults (290 steps, label weight 10, the phrase banks with boundary phrasings): the others are
# read against it
FULL_BUDGET_REFERENCE = "boundary-banks-w10"


@dataclass(frozen=True)
class MeasuredVariant:
    """One full-budget training run of ``benchmarks/quality_bar.py``, as its results file keeps it."""

    name: str  # the variant's key in the results file (it says what differs from the defaults)
    method: str  # lora | qlora
    steps: int | None  # None where the file does not say (a run scored afterwards from its folder)
    label_token_weight: float | None
    learning_rate: float | None
    train_seconds: float | None
    field: dict[str, Estimate]  # metric -> its value and interval on the field test
    generated: dict[str, Estimate]  # the same on the generated test split

    def accuracy_columns(self) -> dict[str, str]:
        """Both test sets' label accuracies with their 95% intervals, as table columns (``field category``, ...)."""
        columns = {f"field {m.removesuffix('_accuracy')}": self.field[m].text() for m in FULL_BUDGET_METRICS}
        return columns | {
            f"generated {m.removesuffix('_accuracy')}": self.generated[m].text() for m in FULL_BUDGET_METRICS
        }


def full_budget_variants(path: str | Path = FULL_BUDGET_RESULTS) -> list[MeasuredVariant]:
    """Every trained variant of a ``quality_bar.py`` results file (base-model rows left out), in file order."""
    import json

    entries = json.loads(Path(path).read_text())
    variants = []
    for name, entry in entries.items():
        for method, result in entry["results"].items():
            if method not in ("lora", "qlora") or "field_test" not in result:
                continue
            config = entry.get("configs", {}).get(method, {})
            variants.append(
                MeasuredVariant(
                    name,
                    method,
                    config.get("max_steps") or result.get("steps_run"),
                    config.get("label_token_weight"),
                    config.get("learning_rate"),
                    result.get("train_seconds"),
                    {m: Estimate(**result["field_test"]["metrics"][m]) for m in FULL_BUDGET_METRICS},
                    {m: Estimate(**result["test"]["metrics"][m]) for m in FULL_BUDGET_METRICS},
                )
            )
    return variants


def full_budget_rows(variants: list[MeasuredVariant]) -> list[dict]:
    """One row per variant: its knobs and both test sets' label accuracies with their 95% intervals."""
    rows = []
    for v in variants:
        row = {
            "variant": v.name,
            "method": v.method,
            "steps": v.steps if v.steps is not None else "-",
            "label weight": f"{v.label_token_weight:g}" if v.label_token_weight is not None else "-",
            "learning rate": f"{v.learning_rate:g}" if v.learning_rate is not None else "-",
        }
        rows.append(row | v.accuracy_columns())
    return rows


def full_budget_sentence(variants: list[MeasuredVariant], reference: str = FULL_BUDGET_REFERENCE) -> str:
    """Each LoRA variant against the reference on the field test, read from the intervals: which differ at all."""
    by_name = {(v.name, v.method): v for v in variants}
    ref = by_name.get((reference, "lora"))
    if ref is None:
        return f"The results file has no LoRA run named {reference!r} to compare against."
    parts = []
    for v in variants:
        if v.method != "lora" or v.name == reference:
            continue
        verdicts = [f"{m.removesuffix('_accuracy')} {compare(v.field[m], ref.field[m])}" for m in FULL_BUDGET_METRICS]
        parts.append(f"{v.name}: " + ", ".join(verdicts))
    differs = [p for p in parts if "higher" in p or "lower" in p]
    return (
        f"Against {reference} on the field test ({len(parts)} LoRA variants): "
        + "; ".join(parts)
        + f". {len(differs)} of {len(parts)} differ beyond noise in at least one label; the rest are within noise."
    )
