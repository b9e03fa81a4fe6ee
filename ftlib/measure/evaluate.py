"""Evaluation: task metrics with intervals over a run's greedy answers (``ftlib.engine.inference``), a few-shot
baseline, side-by-side samples of several runs, confusion matrices and the success bar a run is judged by."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import numpy as np
from rouge_score import rouge_scorer

from ftlib.core.config import DEFAULT_DECODING, Decoding
from ftlib.core.fileio import write_json
from ftlib.core.tasks import Task, parse_answer
from ftlib.engine.inference import HeldOut, generate, heldout_loss
from ftlib.measure.stats import Estimate, mean_estimates


def attribute_coverage(text: str, attributes: dict) -> float:
    """Share of the attributes a description states: values found in the text (numbers also with thousands
    separators; true flags by their name, e.g. "pets" for pets_allowed; false flags are not required)."""
    lowered = text.lower()
    found, total = 0, 0
    for key, value in attributes.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is False:
                continue
            total += 1
            if item is True:  # "pets_allowed" -> any word starting with "pet"
                patterns = [rf"(?<!\w){re.escape(key.split('_')[0].rstrip('s'))}"]
            elif isinstance(item, (int, float)):  # whole numbers only: "2" must not match inside "1,200"
                patterns = [rf"(?<![\w,.]){re.escape(n)}(?!\w|[,.]\d)" for n in {str(item), f"{item:,}"}]
            else:
                patterns = [rf"(?<!\w){re.escape(str(item).lower())}(?!\w)"]
            found += any(re.search(p, lowered) for p in patterns)
    return found / total if total else 1.0


def per_example_scores(prediction: str, reference: dict, task: Task, rouge=None) -> dict[str, float]:
    """Scores of one answer.

    JSON tasks: validity, accuracy of each label field, all labels right, ROUGE-L of free-text fields.
    Text tasks: attribute coverage of the input object, ROUGE-L against the reference.
    """
    rouge = rouge or rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    if task.answer_format == "text":
        field = task.answer_fields[0]
        scores = (
            {"attribute_coverage": attribute_coverage(prediction, reference[task.input_field])}
            if task.input_is_object and isinstance(reference.get(task.input_field), dict)
            else {}
        )
        expected = task.answers(reference)  # a chat's reference is its last assistant turn
        if field in expected:
            scores[f"{field}_rougeL"] = rouge.score(str(expected[field]), prediction)["rougeL"].fmeasure
        return scores
    parsed = parse_answer(prediction)
    scores = {"json_valid": float(parsed is not None)}
    parsed = parsed or {}
    labels = [field for field in task.label_fields if field in reference]  # absent references skip their metric
    for field in labels:
        scores[f"{field}_accuracy"] = float(
            str(parsed.get(field, "")).strip().lower() == str(reference[field]).strip().lower()
        )
    if len(labels) > 1:
        scores["labels_exact_match"] = float(all(scores[f"{f}_accuracy"] for f in labels))
    for field in task.text_answer_fields:
        if field in reference:
            scores[f"{field}_rougeL"] = rouge.score(str(reference[field]), str(parsed.get(field, "")))[
                "rougeL"
            ].fmeasure
    return scores


def score_answers(
    predictions: list[str],
    references: list[dict],
    task: Task,
    seed: int = 0,
    rows: list[dict[str, float]] | None = None,
) -> dict[str, Estimate]:
    """Aggregate task metrics, each with a 95% bootstrap interval.

    Args:
        rows: the answers' ``per_example_scores`` when already computed; computed here otherwise.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if rows is None:
        rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        rows = [per_example_scores(p, r, task, rouge) for p, r in zip(predictions, references)]
    metrics = mean_estimates(rows, seed=seed)
    for field, labels in task.label_values.items():
        if references and all(field in r for r in references):
            metrics[f"{field}_macro_f1"] = macro_f1_with_interval(predictions, references, field, labels, seed=seed)
    return metrics


def few_shot_examples(train_records: list[dict], task: Task, k: int = 3, seed: int = 0) -> list[dict]:
    """``k`` solved training records for a few-shot prompt, as diverse as the task allows.

    Records are drawn round-robin over the task's strata (``task.stratum``, e.g. the ticket category) in a
    seeded random order, so ``k`` up to the number of strata gives ``k`` different labels. Only records with
    their input and every answer field qualify.

    Raises:
        ValueError: fewer than ``k`` records qualify.
    """
    usable = [r for r in train_records if task.input_field in r and len(task.answers(r)) == len(task.answer_fields)]
    if len(usable) < k:
        raise ValueError(
            f"{k} few-shot examples asked for, but only {len(usable)} training records have "
            f"'{task.input_field}' and every answer field ({', '.join(task.answer_fields)})"
        )
    rng = random.Random(seed)
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in usable:
        groups[task.stratum(record)].append(record)
    strata = sorted(groups)
    rng.shuffle(strata)
    for stratum in strata:
        rng.shuffle(groups[stratum])
    picked: list[dict] = []
    while len(picked) < k:
        for stratum in strata:
            if groups[stratum] and len(picked) < k:
                picked.append(groups[stratum].pop())
    return picked


@dataclass(frozen=True)
class Prediction:
    """One scored answer: the record's id and input, its reference answer, the model's answer and its scores."""

    id: str | None
    input: str
    reference: dict
    prediction: str
    scores: dict[str, float]  # per_example_scores of the answer


@dataclass
class EvaluationResult:
    """What ``evaluate_model`` measured for one model on one set of records.

    Saved as JSON with ``write_json`` (the dataclass's fields, nested) and read back with ``read_results``.
    """

    metrics: dict[str, Estimate]  # headline and per-field metrics, each with its 95% interval
    heldout: HeldOut | None  # the references' loss under the model (None: skipped, or references incomplete)
    predictions: list[Prediction]
    examples: int
    few_shot: list | None = None  # the ids of the solved examples in every prompt; None: zero-shot

    def metric(self, name: str) -> Estimate:
        """One metric, or a KeyError that lists the metrics there are."""
        if name not in self.metrics:
            raise KeyError(f"no metric {name!r}; this result has {', '.join(self.metrics)}")
        return self.metrics[name]

    def answers(self) -> list[str]:
        return [p.prediction for p in self.predictions]

    @classmethod
    def from_dict(cls, saved: dict) -> EvaluationResult:
        """A result as ``write_json`` saved it."""
        heldout = saved.get("heldout")
        return cls(
            {name: Estimate(**stat) for name, stat in saved["metrics"].items()},
            HeldOut(**heldout) if heldout else None,
            [Prediction(**p) for p in saved["predictions"]],
            saved["examples"],
            saved.get("few_shot"),
        )


def read_results(path: str | Path) -> dict[str, EvaluationResult]:
    """A JSON file of ``{run: EvaluationResult}`` as a lesson saved it (e.g. lesson 05's ``eval/metrics.json``)."""
    return {name: EvaluationResult.from_dict(saved) for name, saved in json.loads(Path(path).read_text()).items()}


def evaluate_model(
    model,
    tokenizer,
    records: list[dict],
    task: Task,
    decoding: Decoding = DEFAULT_DECODING,
    few_shot: list[dict] | None = None,
    heldout: bool = True,
) -> EvaluationResult:
    """Generate answers for ``records`` and score them; also the held-out loss of the references.

    Args:
        decoding: prompts per batch (also the held-out loss's batch) and new tokens per answer.
        few_shot: solved records (``few_shot_examples``) shown before every prompt; None for zero-shot.
            The held-out loss is then skipped: it scores the references under the zero-shot prompt,
            which is the zero-shot row's number already.
        heldout: False skips the held-out loss where only the answers' scores are read: its forward pass over
            every whole reference took longer than 24 answer tokens of 8 tickets (SmolLM2-135M, one CPU thread).

    Returns:
        The metrics (``score_answers``), the held-out loss (or None), every scored answer, the number of examples
        and the few-shot examples' ids.
    """
    conversations = [task.prompt_messages(r, few_shot or ()) for r in records]
    predictions = generate(model, tokenizer, conversations, decoding, json_answers=task.answer_format == "json")
    rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [per_example_scores(p, r, task, rouge) for p, r in zip(predictions, records)]
    # Perplexity needs every reference answer in full; without them it is skipped, not guessed.
    complete = all(len(task.answers(r)) == len(task.answer_fields) for r in records)
    return EvaluationResult(
        score_answers(predictions, records, task, rows=scores),
        heldout_loss(model, tokenizer, records, task, decoding.batch_size)
        if heldout and complete and not few_shot
        else None,
        [
            Prediction(r.get("id"), task.input_text(r), task.answers(r), p, s)
            for r, p, s in zip(records, predictions, scores)
        ],
        len(records),
        [example.get("id") for example in few_shot] if few_shot else None,
    )


def reference_text(reference: dict) -> str:
    """A stored reference answer as text: a single field's value, or compact JSON of several fields."""
    if len(reference) == 1:
        return str(next(iter(reference.values())))
    return json.dumps(reference, ensure_ascii=False, separators=(",", ":"))


def common_examples(results: dict[str, EvaluationResult]) -> list[Prediction]:
    """The predictions of the first run, after checking that every run answered the same examples in order.

    Raises:
        ValueError: a run was scored on other examples, or in another order.
    """
    runs = list(results)
    examples = results[runs[0]].predictions if runs else []
    for run in runs[1:]:
        if [(p.id, p.input) for p in results[run].predictions] != [(p.id, p.input) for p in examples]:
            raise ValueError(f"runs {runs[0]!r} and {run!r} were not scored on the same examples in the same order")
    return examples


def sample_comparison(
    results: dict[str, EvaluationResult],
    n_best: int = 2,
    n_worst: int = 3,
    metric: str | None = None,
    n_disagree: int = 2,
) -> list[dict]:
    """Every run's answer, side by side, on the examples worth reading: the failures first.

    Each answer's score is its per-example ``metric`` (``evaluate_model`` keeps ``per_example_scores``),
    or by default the mean of all its per-example scores. The best run is the one with the highest mean
    score. Picked, each example at most once: the ``n_worst`` examples the best run scores lowest (ties:
    where the runs disagree most), the ``n_disagree`` examples with the widest spread of scores between
    runs, and the ``n_best`` examples the best run scores highest.

    Returns:
        Rows of ``case`` (worst, disagree, best), ``id``, ``input``, ``reference``, then per run its answer
        (key: the run's name) and its score (key: ``"<run> score"``).

    Raises:
        ValueError: the runs were not scored on the same examples, or an answer lacks per-example scores.
    """
    runs = list(results)
    if not runs:
        return []
    examples = common_examples(results)

    def score(run: str, index: int) -> float:
        values = results[run].predictions[index].scores
        if metric is not None:
            if metric not in values:
                raise ValueError(f"no per-example metric {metric!r} in run {run!r}; it has {', '.join(values)}")
            return values[metric]
        return sum(values.values()) / len(values) if values else float("nan")

    table = {run: [score(run, i) for i in range(len(examples))] for run in runs}
    best_run = max(runs, key=lambda run: np.mean(table[run]) if table[run] else float("-inf"))
    spread = [max(table[run][i] for run in runs) - min(table[run][i] for run in runs) for i in range(len(examples))]
    picked: dict[int, str] = {}  # example index -> case, in the order picked

    def pick(case: str, count: int, candidates, order) -> None:
        for index in sorted((i for i in candidates if i not in picked), key=order)[: max(count, 0)]:
            picked[index] = case

    indices = range(len(examples))
    pick("worst", n_worst, indices, lambda i: (table[best_run][i], -spread[i], i))
    pick("disagree", n_disagree, [i for i in indices if spread[i] > 0], lambda i: (-spread[i], i))
    pick("best", n_best, indices, lambda i: (-table[best_run][i], i))
    rows = []
    for index, case in picked.items():
        entry = examples[index]
        row = {
            "case": case,
            "id": entry.id,
            "input": entry.input,
            "reference": reference_text(entry.reference),
        }
        for run in runs:
            row[run] = results[run].predictions[index].prediction
            row[f"{run} score"] = round(table[run][index], 3)
        rows.append(row)
    return rows


def metrics_table(results: dict[str, EvaluationResult], metric_names: list[str] | None = None) -> list[dict]:
    """Rows of ``run, metric, value, low, high`` for a set of ``evaluate_model`` results."""
    rows = []
    for run, result in results.items():
        for name, stat in result.metrics.items():
            if metric_names is None or name in metric_names:
                rows.append(
                    {"run": run, "metric": name} | {k: round(getattr(stat, k), 4) for k in ("value", "low", "high")}
                )
        if result.heldout:
            rows.append(
                {
                    "run": run,
                    "metric": "perplexity",
                    "value": round(result.heldout.perplexity, 3),
                    "low": None,
                    "high": None,
                }
            )
    return rows


def set_comparison(results_by_set: dict[str, dict[str, EvaluationResult]], metric_names: list[str]) -> list[dict]:
    """Every run's metrics on several test sets side by side, with 95% intervals and the gap to the first set.

    Args:
        results_by_set: set name (e.g. "generated test", "field test") -> run name -> ``evaluate_model`` result.

    Returns:
        Rows of ``run``, ``metric``, then per set its value and ``"<set> 95% CI"``, then ``gap`` (last set minus
        first) and ``intervals overlap``.
    """
    sets = list(results_by_set)
    runs = [run for run in results_by_set[sets[0]] if all(run in results_by_set[s] for s in sets)]
    rows = []
    for run in runs:
        for metric in metric_names:
            stats = [results_by_set[s][run].metrics.get(metric) for s in sets]
            if any(stat is None for stat in stats):
                continue
            row: dict = {"run": run, "metric": metric}
            for name, stat in zip(sets, stats):
                row[f"{name} (n={results_by_set[name][run].examples})"] = stat.value
                row[f"{name} 95% CI"] = stat.interval_text()
            row["gap"] = stats[-1].value - stats[0].value
            row["intervals overlap"] = stats[-1].overlaps(stats[0])
            rows.append(row)
    return rows


def verdict(results: dict[str, EvaluationResult], baseline: str, metrics: list[str]) -> str:
    """A plain-language comparison of each run against ``baseline``, decided by interval overlap."""
    base = results[baseline].metrics
    lines = []
    for run, result in results.items():
        if run == baseline:
            continue
        better, worse, unclear = [], [], []
        for name in metrics:
            ours, theirs = result.metrics[name], base[name]
            text = f"{name} {ours.text()} vs {theirs.value:.2f}"
            if ours.above(theirs):
                better.append(text)
            elif ours.below(theirs):
                worse.append(text)
            else:
                unclear.append(text)
        summary = (
            "beats"
            if better and not worse
            else "is worse than"
            if worse and not better
            else "is not clearly better than"
        )
        lines.append(f"{run} {summary} {baseline}.")
        lines += [f"  better: {t}" for t in better] + [f"  worse: {t}" for t in worse]
        lines += [f"  no clear difference: {t}" for t in unclear]
    return "\n".join(lines)


def confusion_matrix(
    predictions: list[str], references: list[dict], field: str, labels: tuple[str, ...]
) -> tuple[list[str], np.ndarray]:
    """Counts of (reference label, predicted label) for one label field.

    Rows are the reference labels, columns the predicted ones plus "(invalid)" for answers that are not
    JSON or carry a value outside ``labels``.
    """
    columns = list(labels) + ["(invalid)"]
    matrix = np.zeros((len(labels), len(columns)), dtype=int)
    for prediction, reference in zip(predictions, references):
        if field not in reference:
            continue
        parsed = parse_answer(prediction) or {}
        predicted = str(parsed.get(field, "")).strip().lower()
        column = columns.index(predicted) if predicted in labels else len(labels)
        expected = str(reference[field]).strip().lower()
        if expected not in labels:
            raise ValueError(
                f"reference {field} {reference[field]!r} (id {reference.get('id')}) is not one of {list(labels)}:"
                " curate the file first (ftlib.data.curate)"
            )
        matrix[labels.index(expected), column] += 1
    return columns, matrix


def macro_f1(matrix: np.ndarray) -> float:
    """Mean F1 over the reference labels (invalid answers count as misses)."""
    n = matrix.shape[0]
    true_positive = np.diag(matrix[:, :n]).astype(float)
    predicted = matrix[:, :n].sum(axis=0)
    actual = matrix.sum(axis=1)
    precision = np.divide(true_positive, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros(n), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
    present = actual > 0
    return float(f1[present].mean()) if present.any() else float("nan")


def macro_f1_with_interval(
    predictions: list[str],
    references: list[dict],
    field: str,
    labels: tuple[str, ...],
    n_resamples: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Macro-F1 of a label field and its 95% bootstrap interval (resampling examples)."""
    _, matrix = confusion_matrix(predictions, references, field, labels)
    rng = np.random.default_rng(seed)
    n = len(predictions)
    scores = []
    for _ in range(n_resamples):
        sample = rng.integers(0, n, n)
        _, resampled = confusion_matrix(
            [predictions[i] for i in sample], [references[i] for i in sample], field, labels
        )
        scores.append(macro_f1(resampled))
    low, high = np.nanquantile(scores, [0.025, 0.975])
    return Estimate(macro_f1(matrix), float(low), float(high))


SUCCESS_BAR = "success_bar.json"  # in the run folder: written by lesson 02 before any training, read by 05
# Bars set for the built-in tasks: what the run must reach on the test split to count as a success.
TASK_BARS = {
    "support_tickets": {"json_valid": 0.99, "category_accuracy": 0.95, "urgency_accuracy": 0.85},
}
# Defaults for any other task, by the kind of headline metric. A choice, not a measurement: edit them to your need.
DEFAULT_BARS = {"json_valid": 0.99, "accuracy": 0.8, "rougeL": 0.3, "attribute_coverage": 0.8}


@dataclass(frozen=True)
class SuccessBar:
    """The minimum each headline metric must reach on the test split, fixed before any training."""

    task: str
    thresholds: dict[str, float]  # metric -> the lowest value that counts as met
    note: str = ""
    source: str = dataclass_field(default="", compare=False)  # where it came from (a file, or the defaults), not saved

    def rows(self) -> list[dict]:
        return [{"metric": name, "at least": value} for name, value in self.thresholds.items()]

    def write(self, path: str | Path) -> Path:
        return write_json({"task": self.task, "thresholds": self.thresholds, "note": self.note}, path)

    @classmethod
    def read(cls, path: str | Path) -> SuccessBar:
        saved = json.loads(Path(path).read_text())
        thresholds = {name: float(value) for name, value in saved["thresholds"].items()}
        return cls(saved["task"], thresholds, saved.get("note", ""), str(path))


def success_bar(task: Task) -> SuccessBar:
    """The bar for ``task``: ``TASK_BARS`` for a built-in task, else a threshold per headline metric taken from
    ``DEFAULT_BARS`` by the metric's kind (JSON validity, label accuracy, ROUGE-L, attribute coverage)."""
    if task.name in TASK_BARS:
        note = "set for this task (a choice, not a measurement): routing needs right labels in valid JSON"
        return SuccessBar(task.name, dict(TASK_BARS[task.name]), note, "defaults")
    thresholds = {}
    for metric in task.headline_metrics:
        kind = next((k for k in ("json_valid", "attribute_coverage", "accuracy", "rougeL") if metric.endswith(k)), None)
        if kind is not None:
            thresholds[metric] = DEFAULT_BARS[kind]
    note = "defaults by metric kind (ftlib.measure.evaluate.DEFAULT_BARS): a choice, not a measurement"
    return SuccessBar(task.name, thresholds, note, "defaults")


def load_success_bar(path: str | Path, task: Task) -> SuccessBar:
    """The bar lesson 02 wrote at ``path``; ``success_bar(task)`` when there is none (02 has not run here).

    Raises:
        ValueError: the file's bar belongs to another task.
    """
    if not Path(path).exists():
        return success_bar(task)
    bar = SuccessBar.read(path)
    if bar.task != task.name:
        raise ValueError(f"{path} holds the success bar of task {bar.task!r}, not {task.name!r}")
    return bar


def judge(results: dict[str, EvaluationResult], bar: SuccessBar) -> list[dict]:
    """Every run against the bar: one row per (run, metric) with its value, 95% interval, threshold and verdict.

    "met?" reads the interval: ``yes`` when all of it is at or above the threshold, ``no`` when all of it is
    below, ``unclear`` when it straddles the threshold (more test examples would decide), ``missing`` when the
    run has no such metric. Accuracy rows of label fields also show the field's macro-F1 and its interval.
    """
    rows = []
    for run, result in results.items():
        metrics = result.metrics
        for metric, threshold in bar.thresholds.items():
            stat = metrics.get(metric)
            row = {"run": run, "metric": metric, "value": None, "95% CI": "", "at least": threshold}
            if stat is None:
                row["met?"] = "missing"
            else:
                row |= {"value": stat.value, "95% CI": stat.interval_text(), "met?": stat.verdict(threshold)}
            f1 = metrics.get(metric.removesuffix("_accuracy") + "_macro_f1") if metric.endswith("_accuracy") else None
            row["macro-F1 [95% CI]"] = f1.text() if f1 else ""
            rows.append(row)
    return rows
