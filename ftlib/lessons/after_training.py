"""Lesson 07, after training: the lesson's sizes per profile, and one call per step of its sections.

- forgetting (``forgetting_study``): LoRA, full fine-tuning and LoRA with general data mixed in, trained for the
  same steps on the task, each measured against the base on prompts outside the task (``ftlib.measure.forgetting``);
- drift and re-tuning (``drift_study``, a ``DriftStudy``): the run in use scored on the old test split and on a
  later-period batch, the weekly drift check (``ftlib.measure.drift``), re-tunes from its adapter with and without
  replay of old data, and every run on both test sets; tasks without a later batch skip it with one line;
- tracking (``tensorboard_note``): where the TensorBoard event files of the lesson's runs are, and how to open them;
- inference cost (``cost_study``): ``ftlib.measure.cost.measure`` on the run in use;
- shipping (``shipping_note``): what ``ftlib.engine.export.ship`` wrote and how to run it.

Every comparison reads 95% intervals (``ftlib.measure.stats.compare``): "within noise" when they overlap.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ftlib.core.config import Decoding, TrainConfig
from ftlib.core.fileio import write_json
from ftlib.core.runs import MANIFEST, load_run
from ftlib.core.runtime import release_memory
from ftlib.core.tasks import Task, get_task, raw_data_file
from ftlib.data.records import read_jsonl, validate_records
from ftlib.engine.trainer import TENSORBOARD_DIR
from ftlib.lessons.sweeps import main_metric
from ftlib.measure import cost, drift, forgetting
from ftlib.measure.evaluate import EvaluationResult, evaluate_model, few_shot_examples, load_success_bar, set_comparison
from ftlib.measure.stats import compare

# Tasks with a later-period batch (``ftlib.data.samples.write_later_tickets``), as a file beside the task's data.
LATER_BATCHES = {"support_tickets": "support_tickets_later.jsonl"}
OTHER_TASK = "listings"  # the task outside the lesson's whose prompts and scores show forgetting
OTHER_TASK_FOR_LISTINGS = "support_tickets"  # ... when the lesson's task is listings itself
FORGETTING_VARIANTS = ("LoRA", "full fine-tune", "LoRA + general data")
RETUNES = {"re-tune, new data only": 0.0, "re-tune, new + replayed old": None}  # None: the sizes' replay share
TRACKED = "re-tune, new + replayed old"  # the re-tune that also logs to TensorBoard


@dataclass(frozen=True)
class AfterSizes:
    """Run lengths and record counts of lesson 07 for one profile (batch, rank, rate and max_length: the profile's)."""

    max_steps: int  # every forgetting variant's steps (equal steps: the variants differ in one thing)
    retune_steps: int  # each re-tune's steps from the adapter in use
    warmup_steps: int
    n_val: int  # validation records of every run (one evaluation, at the end)
    n_test: int  # old test records and later-period test records each run answers
    n_new_train: int  # later-period records a re-tune trains on (before replay)
    n_drift: int  # records per batch for the drift check's unlabelled signals (new batch and old test alike)
    n_generic: int  # general prompts probed for forgetting (of the 'measure' half)
    n_other: int  # the other task's records probed and scored
    probe_tokens: int  # the base's greedy continuation per probe, and the other task's answers
    answer_tokens: int  # max_new_tokens of every scored answer
    n_cost: int  # tickets answered per timed setup
    n_ship: int  # records the export's parity checks answer
    general_share: float  # general records' share of the mixed training set
    replay_share: float  # old records' share of the replayed re-tune's training set
    full_learning_rate: float  # full fine-tuning's rate: every weight moves, so far below LoRA's
    full: bool = True  # train the full fine-tune (False where it cannot fit: a 7-8B model on one GPU)


SIZES = {
    # CI: the mechanics only. 2 steps, 8 records per set (one general prompt of each of the 5 kinds), few tokens.
    # No full fine-tune: saving its 0.5 GB model twice a test session costs more than the 20-minute test budget
    # has left; the gpu profile's path without it runs in CI this way, full fine-tuning in the cpu profile.
    "smoke": AfterSizes(2, 2, 0, 4, 8, 16, 8, 5, 4, 8, 16, 4, 2, 0.1, 0.3, 5e-5, full=False),
    # 5 runs of 10 steps, 8 scoring passes of 32 tickets at the profile's 80 answer tokens (the whole JSON answer,
    # as the success bar needs), 40 + 16 probes. At 16 steps and 32 timed tickets per setup the
    # notebook took 574 s on 2 idle cores (forgetting 300 s, re-tuning 146 s), which left `make curriculum` at
    # 65 minutes. These sizes took 836 s on a slower 2-core machine (2026-12-03), where the unchanged lessons 03-05
    # ran 1.5-1.7x their 2026-11-29 times: about 10% saved.
    # 0.1 general data and 0.3 replay, and full fine-tuning at 5e-5 (benchmarks/forgetting.py's default): choices.
    "cpu": AfterSizes(10, 10, 1, 16, 32, 128, 100, 40, 16, 48, 80, 24, 4, 0.1, 0.3, 5e-5),
    # Not measured: the gpu profile's length; full fine-tuning of its 7-8B model needs an 80 GB card (lesson 01).
    "gpu": AfterSizes(100, 100, 10, 100, 200, 400, 300, 40, 48, 96, 96, 100, 8, 0.1, 0.3, 2e-5, full=False),
}


def lesson_sizes(profile_name: str, max_steps: int | None = None) -> AfterSizes:
    """The sizes of ``profile_name``; ``max_steps`` (the notebook parameter) sets every run's steps."""
    sizes = SIZES[profile_name]
    if max_steps:
        sizes = replace(
            sizes, max_steps=max_steps, retune_steps=max_steps, warmup_steps=min(sizes.warmup_steps, max_steps - 1)
        )
    return sizes


def answer_decoding(lesson, sizes: AfterSizes) -> Decoding:
    """The profile's generation batch with lesson 07's answer length (``sizes.answer_tokens``)."""
    return replace(lesson.profile.decoding, max_new_tokens=sizes.answer_tokens)


def output_folder(lesson) -> Path:
    """Where lesson 07 writes: ``<run>/after/``, beside the other lessons' folders."""
    return lesson.paths.root / "after"


def run_config(lesson, sizes: AfterSizes, method: str = "lora", **overrides) -> TrainConfig:
    """The profile's config at this lesson's step budget: one evaluation, at the end, and no checkpoints."""
    steps = overrides.pop("max_steps", sizes.max_steps)
    return lesson.profile.train_config(
        method, max_steps=steps, warmup_steps=sizes.warmup_steps, eval_steps=steps, save_checkpoints=False, **overrides
    )


def tracker() -> str:
    """``"tensorboard"`` where it is installed (``ftlib[tracking]``), else ``"none"``: the run trains either way."""
    return "tensorboard" if importlib.util.find_spec("tensorboard") else "none"


# ---------------------------------------------------------------- forgetting


def other_task(task: Task) -> Task:
    """The task outside the lesson's: listings, or the tickets when the lesson's task is listings."""
    return get_task(OTHER_TASK_FOR_LISTINGS if task.name == OTHER_TASK else OTHER_TASK)


def generic_prompts(n: int) -> list[dict]:
    """``n`` of the general prompts kept for measuring, taken in turn from each kind (explanation, arithmetic, ...),
    so that a few of them still cover every kind."""
    by_kind: dict[str, list[dict]] = {}
    for record in forgetting.read_generic("measure"):
        by_kind.setdefault(record["kind"], []).append(record)
    rounds = zip(*by_kind.values())  # the kinds hold equal numbers of prompts
    return [record for round_ in rounds for record in round_][:n]


def other_records(task: Task, n: int) -> list[dict]:
    """The first ``n`` records of ``task``'s data with every field, none of them blank (its raw file holds flaws)."""
    valid, _ = validate_records(read_jsonl(raw_data_file(task)), task)
    filled = [r for r in valid if all(str(value).strip() for value in task.answers(r).values())]
    return filled[:n]


@dataclass
class ForgettingStudy:
    """The forgetting variants, each trained for the same steps and measured against the same base reference."""

    reports: dict[str, forgetting.ForgettingReport]
    runs: dict[str, str]  # variant -> run folder
    val_loss: dict[str, float]  # variant -> final validation loss on the lesson's own task
    train_examples: dict[str, int]
    other_task: str
    steps: int

    def rows(self) -> list[dict]:
        """One row per variant: own-task loss, KL on general and other-task prompts, and the other task's score."""
        rows = []
        for name, report in self.reports.items():
            row = {
                "run": name,
                "steps": self.steps,
                "train examples": self.train_examples[name],
                "own val loss": round(self.val_loss[name], 3),
            }
            for source, stat in report.kl.items():
                if source != "all":
                    row[f"KL {source} (n={report.prompts[source]}) [95% CI]"] = stat.text(4)
            for metric, stats in report.task_scores.items():
                row[f"{report.task} {metric}: tuned - base [95% CI]"] = stats.difference.text(3)
            rows.append(row)
        return rows

    def sentence(self) -> str:
        """What the measures say, from their intervals: how far LoRA moved, and full and the mix against it."""
        lora = self.reports.get("LoRA")
        if lora is None:
            return "No LoRA variant was measured."
        generic = lora.kl[forgetting.GENERIC_SOURCE]
        lines = [
            f"LoRA moved {generic.value:.4f} nats per token from the base on general prompts"
            f" (95% CI {generic.interval_text(4)}; 0 is no change) after {self.steps} steps."
        ]
        for name in FORGETTING_VARIANTS[1:]:
            report = self.reports.get(name)
            if report is None:
                continue
            verdict = compare(report.kl[forgetting.GENERIC_SOURCE], generic)
            said = {"higher": "further than LoRA", "lower": "less far than LoRA"}.get(verdict, "within noise of LoRA")
            lines.append(f"{name}: {report.kl[forgetting.GENERIC_SOURCE].text(4)} on general prompts: {said}.")
        for name, report in self.reports.items():
            for metric, stats in report.task_scores.items():
                gap = stats.difference
                change = "lower than" if gap.high < 0 else "higher than" if gap.low > 0 else "within noise of"
                lines.append(
                    f"{name} on {report.task} {metric}: {stats.tuned.value:.3f} vs the base's"
                    f" {stats.base.value:.3f}, {change} the base (paired difference {gap.text(3)})."
                )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "steps": self.steps,
            "other_task": self.other_task,
            "runs": self.runs,
            "val_loss": self.val_loss,
            "train_examples": self.train_examples,
            "reports": {name: report.as_dict() for name, report in self.reports.items()},
        }


def forgetting_study(lesson, sizes: AfterSizes) -> ForgettingStudy:
    """Train LoRA, full fine-tuning (where ``sizes.full``) and LoRA with general data for ``sizes.max_steps`` on the
    lesson's train split, and measure each against the base (``ftlib.measure.forgetting.measure``); runs go under
    ``<run>/after/forgetting/`` and the study to ``forgetting.json`` there. The LoRA run logs to TensorBoard."""
    from ftlib.engine import train
    from ftlib.engine.models import load_model

    folder = output_folder(lesson) / "forgetting"
    task, profile = lesson.task, lesson.profile
    train_set, val_set = lesson.split("train"), lesson.split("val")[: sizes.n_val]
    other = other_task(task)
    records = other_records(other, sizes.n_other)
    probes = forgetting.probes(generic_prompts(sizes.n_generic), records, other)
    base, tokenizer = load_model(profile.base_model, lesson.base_quantization, lesson.device)
    decoding = replace(profile.decoding, max_new_tokens=sizes.probe_tokens)
    reference = forgetting.base_reference(base, tokenizer, probes, records, other, decoding)
    variants = {
        "LoRA": (run_config(lesson, sizes, report_to=tracker()), train_set),
        "full fine-tune": (run_config(lesson, sizes, "full", learning_rate=sizes.full_learning_rate), train_set),
        "LoRA + general data": (
            run_config(lesson, sizes),
            forgetting.mix_general(train_set, forgetting.read_generic("mix"), sizes.general_share),
        ),
    }
    if not sizes.full:
        del variants["full fine-tune"]
    study = ForgettingStudy({}, {}, {}, {}, other.name, sizes.max_steps)
    for name, (config, records_) in variants.items():
        run_folder = folder / name.replace(" + ", "-").replace(" ", "-")
        result = train.train(
            profile.base_model, records_, val_set, run_folder, config=config, task=task, device=lesson.device
        )
        study.reports[name] = forgetting.measure(
            base, result.model, tokenizer, probes, records, other, name, reference, decoding
        )
        study.runs[name] = str(run_folder)
        study.val_loss[name] = result.record.metrics.final_val_loss
        study.train_examples[name] = len(records_)
        del result
        release_memory()
    write_json(study.as_dict(), folder / "forgetting.json")
    return study


def current_run(lesson, study: ForgettingStudy | None = None) -> Path:
    """The run in use: lesson 03's LoRA run of this run folder, else the forgetting section's short LoRA run
    (trained on the same split with the profile's settings), saying so."""
    lora = lesson.paths.lora
    if (lora / MANIFEST).exists():
        print(f"The run in use: lesson 03's LoRA run ({lora}).")
        return lora
    if study is None or "LoRA" not in study.runs:
        raise FileNotFoundError(f"no LoRA run in {lora}: run 03_lora.ipynb with the same run_dir first")
    fallback = Path(study.runs["LoRA"])
    print(
        f"No LoRA run in {lora} (03_lora.ipynb has not run with this run_dir): the run in use is this lesson's"
        f" short LoRA run, {fallback} ({study.steps} steps)."
    )
    return fallback


# ---------------------------------------------------------------- drift and re-tuning


def later_batch(task: Task) -> list[dict] | None:
    """The task's later-period batch (``LATER_BATCHES``), or None when it has none."""
    name = LATER_BATCHES.get(task.name)
    return read_jsonl(raw_data_file(task).parent / name) if name else None


@dataclass(frozen=True)
class LaterSplits:
    """The later batch cut into a labelled test sample, validation and training records, disjoint and in order."""

    test: list[dict]
    val: list[dict]
    train: list[dict]
    batch: int  # records in the whole later batch

    def rows(self) -> list[dict]:
        return [
            {"later-period records": "labelled test sample (scored, never trained on)", "count": len(self.test)},
            {"later-period records": "validation (the re-tunes' loss)", "count": len(self.val)},
            {
                "later-period records": "training (the re-tunes, and the drift check's new batch)",
                "count": len(self.train),
            },
            {"later-period records": "in the batch", "count": self.batch},
        ]


def later_splits(records: list[dict], sizes: AfterSizes) -> LaterSplits:
    """The first ``n_test`` records for testing, the next ``n_val`` for validation, the next ``n_new_train`` to
    train (the batch is generated in random order, so the first records are a random sample).

    Raises:
        ValueError: the batch is smaller than the three parts together.
    """
    needed = sizes.n_test + sizes.n_val + sizes.n_new_train
    if len(records) < needed:
        raise ValueError(f"the later batch has {len(records)} records; the sizes need {needed}")
    test_end, val_end = sizes.n_test, sizes.n_test + sizes.n_val
    return LaterSplits(records[:test_end], records[test_end:val_end], records[val_end:needed], len(records))


def score_model(model, tokenizer, sets: dict[str, list[dict]], task: Task, decoding: Decoding) -> dict[str, dict]:
    """One model's ``evaluate_model`` result on every set (answers only: no held-out loss), by set name."""
    return {
        name: evaluate_model(model, tokenizer, records, task, decoding, heldout=False) for name, records in sets.items()
    }


def shift_sentence(results: dict[str, dict[str, EvaluationResult]], run: str, metrics: list[str]) -> str:
    """``run`` on the later test sample against the old test split, metric by metric, from the intervals."""
    old, new = (results[name][run].metrics for name in ("old test", "new test"))
    parts = []
    for metric in metrics:
        if metric in old and metric in new:
            verdict = compare(new[metric], old[metric])
            said = {"lower": "lower on the new tickets", "higher": "higher on the new tickets"}.get(verdict, verdict)
            parts.append(f"{metric} {new[metric].text()} new vs {old[metric].text()} old: {said}")
    return f"{run}: " + "; ".join(parts) + "."


@dataclass
class DriftStudy:
    """Lesson 07's drift section, step by step; ``skipped`` says why it does nothing for a task without a later batch.

    Steps: ``score_current`` (the run in use on the old test split and the later sample),
    ``weekly_check``
    (``ftlib.measure.drift.check_drift``), ``retune`` (two re-tunes from the run in use), ``score_retunes`` (every
    run on
    both test sets) and ``retune_sentence``.
    """

    lesson: object  # ftlib.lessons.lesson.Lesson (not imported: lesson is a layer above)
    current: Path
    sizes: AfterSizes
    folder: Path
    splits: LaterSplits | None
    skipped: str | None = None
    results: dict[str, dict[str, dict]] = field(default_factory=dict)  # {set: {run: evaluate_model result}}
    report: drift.DriftReport | None = None
    retunes: dict[str, Path] = field(default_factory=dict)
    loaded: tuple | None = None  # the run in use's (model, tokenizer) from scoring to the check: loaded once

    @property
    def metrics(self) -> list[str]:
        task = self.lesson.task
        return list(dict.fromkeys([*task.headline_metrics, main_metric(task)]))

    def sets(self) -> dict[str, list[dict]]:
        return {"old test": self.lesson.split("test")[: self.sizes.n_test], "new test": self.splits.test}

    def _score(self, run: str, model, tokenizer) -> None:
        scored = score_model(model, tokenizer, self.sets(), self.lesson.task, answer_decoding(self.lesson, self.sizes))
        for name, result in scored.items():
            self.results.setdefault(name, {})[run] = result
        write_json(self.results, self.folder / "scores.json")

    def note(self) -> str:
        """One line: why the section is skipped, or what the later batch is."""
        if self.skipped:
            return self.skipped
        return (
            f"The later batch: {self.splits.batch} {self.lesson.task.name} records from some months after the training"
            " data (new products, a new kind of outage, another mix of categories), same labels and rules."
        )

    def split_rows(self) -> list[dict]:
        return self.splits.rows() if self.splits else []

    def rows(self) -> list[dict]:
        """Every scored run on the old and the new test set, with intervals (``set_comparison``)."""
        return set_comparison(self.results, self.metrics) if self.results else []

    def score_current(self) -> list[dict]:
        """Score the run in use on the old test split and the later sample; the table's rows."""
        if self.skipped:
            return []
        from ftlib.engine.adapters import load_for_eval

        model, tokenizer, _ = load_for_eval(str(self.current))
        self.loaded = (model, tokenizer)
        self._score("in use", model, tokenizer)
        return self.rows()

    def shift_sentence(self) -> str:
        return "" if self.skipped else shift_sentence(self.results, "in use", self.metrics)

    def weekly_check(self) -> drift.DriftReport | None:
        """The drift check of the run in use: the later sample's scores against the success bar (already scored),
        the input perplexity and the vocabulary of the new batch against the old test tickets."""
        if self.skipped:
            return None
        from ftlib.engine.adapters import load_for_eval

        lesson, sizes = self.lesson, self.sizes
        model, tokenizer = self.loaded or load_for_eval(str(self.current))[:2]
        self.report = drift.check_drift(
            model,
            tokenizer,
            lesson.task,
            self.splits.train[: sizes.n_drift],
            lesson.split("test")[: sizes.n_drift],
            lesson.split("train"),
            bar=load_success_bar(lesson.paths.data / "success_bar.json", lesson.task),
            decoding=answer_decoding(lesson, sizes),
            labelled_result=self.results["new test"]["in use"],
        )
        self.loaded = None
        del model
        release_memory()
        write_json(
            {"recommend_retune": self.report.recommend_retune, "reasons": self.report.reasons},
            self.folder / "drift_report.json",
        )
        return self.report

    def check_rows(self) -> list[dict]:
        return self.report.rows() if self.report else []

    def check_text(self) -> str:
        return "" if self.skipped else self.report.text()

    def retune(self) -> list[dict]:
        """Keep training the run in use on the new records, with and without replayed old ones, and score each
        re-tune on both test sets while it is in memory; the runs' rows."""
        if self.skipped:
            return []
        lesson, sizes = self.lesson, self.sizes
        old = lesson.split("train")
        rows = []
        for name, share in RETUNES.items():
            share = sizes.replay_share if share is None else share
            records = drift.retune_records(self.splits.train, old, share, seed=0)
            config = run_config(
                lesson, sizes, max_steps=sizes.retune_steps, report_to=tracker() if name == TRACKED else "none"
            )
            folder = self.folder / ("retune-new-only" if share == 0 else "retune-replay")
            # A re-run of the lesson re-tunes again: the earlier re-tune stays as <folder>.previous.
            result = drift.retune(
                self.current,
                records,
                self.splits.val,
                folder,
                config=config,
                task=lesson.task,
                device=lesson.device,
                replace=True,
            )
            self.retunes[name] = folder
            self._score(name, result.model, result.tokenizer)
            record = result.record
            rows.append(
                {
                    "run": name,
                    "parent": Path(record.parent.run).name if record.parent else "",
                    "new records": len(self.splits.train),
                    "replayed old records": len(records) - len(self.splits.train),
                    "steps": record.checkpoints.steps_run,
                    "final val loss (new)": round(record.metrics.final_val_loss, 3),
                    "tracked": config.report_to,
                }
            )
            del result
            release_memory()
        return rows

    def score_retunes(self) -> list[dict]:
        """Every run on both test sets (scored by ``score_current`` and ``retune``), the run in use first."""
        return [] if self.skipped else self.rows()

    def retune_sentence(self) -> str:
        """Recovery on the new tickets and forgetting of the old, re-tune by re-tune, from the intervals."""
        if self.skipped:
            return ""  # note() said why, once
        metric = main_metric(self.lesson.task)
        old, new = self.results["old test"], self.results["new test"]
        before_old, before_new = old["in use"].metrics[metric], new["in use"].metrics[metric]
        words = {"higher": "higher than before", "lower": "lower than before", "within noise": "within noise of before"}
        lines = [f"{metric}, the run in use: {before_new.text()} new, {before_old.text()} old."]
        for name in self.retunes:
            after_old, after_new = old[name].metrics[metric], new[name].metrics[metric]
            lines.append(
                f"{name}: new {after_new.text()} ({words[compare(after_new, before_new)]}),"
                f" old {after_old.text()} ({words[compare(after_old, before_old)]})."
            )
        if len(self.retunes) == 2:
            plain, replay = (old[name].metrics[metric] for name in self.retunes)
            lines.append(
                f"Replay against new data only, on the old tickets: {compare(replay, plain)}"
                f" ({replay.text()} vs {plain.text()})."
            )
        return "\n".join(lines)


def drift_study(lesson, current: str | Path, sizes: AfterSizes) -> DriftStudy:
    """The drift section's state, with the later batch split; for a task without one, ``skipped`` says so in a line."""
    folder = output_folder(lesson) / "drift"
    records = later_batch(lesson.task)
    if records is None:
        note = (
            f"Drift and re-tuning skipped: only {', '.join(LATER_BATCHES)} has a later-period batch,"
            f" {lesson.task.name} has none."
        )
        return DriftStudy(lesson, Path(current), sizes, folder, None, note)
    return DriftStudy(lesson, Path(current), sizes, folder, later_splits(records, sizes))


# ---------------------------------------------------------------- registry, tracking, cost, shipping


def registry_rows(rows: list) -> list[dict]:
    """The registry's rows (``ftlib.measure.registry.RegistryRow``) without score columns, which differ run by run."""
    keep = ("run", "method", "parent", "train data", "steps", "final val loss")
    return [{key: row.as_row()[key] for key in keep} for row in rows]


def tensorboard_note(folder: str | Path) -> str:
    """Where the TensorBoard event files under ``folder`` are, and the command that opens them."""
    folder = Path(folder)
    events = sorted(folder.rglob("events.out.tfevents.*"))
    if not events:
        return (
            f"No TensorBoard event files under {folder}: install the tracking extra (pip install -e '.[tracking]')"
            " and run this lesson again."
        )
    runs = sorted({next(p for p in path.parents if p.name == TENSORBOARD_DIR).parent for path in events})
    lines = [f"TensorBoard event files of {len(runs)} run(s):"]
    lines += [f"  {run / TENSORBOARD_DIR}" for run in runs]
    lines.append(f"Open them all with: tensorboard --logdir {folder} (then http://localhost:6006 in a browser).")
    return "\n".join(lines)


def cost_study(lesson, run: str | Path, sizes: AfterSizes) -> cost.CostReport:
    """``ftlib.measure.cost.measure`` for the run in use on the task's field test (or its test split): the adapter
    zero-shot,
    the base with three solved examples, the merged adapter; saved as ``<run>/after/cost.json``."""
    from ftlib.engine.adapters import load_adapter
    from ftlib.engine.models import load_model

    record = load_run(run)
    quantization = "nf4" if record.method == "qlora" else None
    tuned, tokenizer = load_adapter(record.base_model, Path(run) / record.weights_folder, quantization, lesson.device)
    base, _ = load_model(record.base_model, quantization, lesson.device)
    records = (lesson.field_test() or lesson.split("test"))[: sizes.n_cost]
    few_shot = few_shot_examples(lesson.split("train"), lesson.task, k=3)
    report = cost.measure(tuned, base, tokenizer, records, lesson.task, few_shot, answer_decoding(lesson, sizes))
    del tuned, base
    release_memory()
    write_json(report.as_dict(), output_folder(lesson) / "cost.json")
    return report


def cost_sentence(report: cost.CostReport) -> str:
    """The measured passes compared in words (one pass each: no interval), and merged against unmerged."""
    tuned, base, merged = report.measurements[:3]
    ratio = base.mean_prompt_tokens / tuned.mean_prompt_tokens
    lines = [
        f"Measured here ({tuned.prompts} tickets, {tuned.threads} thread(s), one pass each, so no interval):"
        f" the tuned model reads {tuned.mean_prompt_tokens:.0f} prompt tokens per ticket, the base with"
        f" {base.name.split(', ')[1]} {base.mean_prompt_tokens:.0f} ({ratio:.1f} x);"
        f" {tuned.seconds_per_ticket:.2f} s vs {base.seconds_per_ticket:.2f} s per ticket.",
        f"Merged adapter: {merged.seconds_per_ticket:.2f} s per ticket against {tuned.seconds_per_ticket:.2f} s"
        " unmerged"
        + (
            f"; {report.merged_identical[0]} of {report.merged_identical[1]} answers identical."
            if report.merged_identical
            else "."
        ),
        "Dollar figures and other hardware are estimates from the formulas in the table, not measurements.",
    ]
    return "\n".join(lines)


def parity_verdict(report) -> str:
    """One line: did every check of an ``ftlib.engine.export.ShipReport`` pass."""
    return "Parity: every check passed." if report.ok else "Parity: a check FAILED: do not ship these files."


def shipping_note(report) -> str:
    """What ``ftlib.engine.export.ship`` wrote, and how to run the files (not run here)."""
    folder = Path(report.gguf).parent
    return "\n".join(
        [
            f"Merged model (transformers): {report.merged_dir}",
            f"Single-file model ({report.gguf_dtype}, {report.gguf_bytes / 1e6:.0f} MB): {report.gguf}",
            f"Ollama Modelfile: {report.modelfile}",
            "To run it (not run here: neither Ollama nor llama.cpp is installed in this course's setup):",
            f"  cd {folder} && ollama create my-tickets -f Modelfile && ollama run my-tickets",
            f"  llama-cli -m {report.gguf} -cnv   # llama.cpp's command-line chat",
        ]
    )


def sizes_rows(sizes: AfterSizes) -> list[dict]:
    """The sizes as a two-column table."""
    return [{"setting": key, "value": str(value)} for key, value in asdict(sizes).items()]
