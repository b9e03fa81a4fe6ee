"""After training: a weekly drift check of a tuned model on new tickets, and re-tuning it with lineage.

``check_drift`` measures three things and ``drift_report`` turns them into a ``DriftReport`` with a
``recommend_retune`` flag and one reason per signal, each giving the figure, the threshold and whether it fired:

* quality, on a small labelled sample of the new tickets: the run's success bar (``ftlib.measure.evaluate.judge``);
* input perplexity, unlabelled: the mean per-token loss of the new tickets' text under the model, against the old
  test tickets' (``ftlib.engine.inference.example_losses``), with a bootstrap interval of the difference;
* vocabulary shift, unlabelled: the share of the new batch's words never seen in the training data, and the
  Jensen-Shannon divergence of its word distribution from the training data's, each against the same figure for
  the old test tickets, which measures what a batch of the *same* period already shows (typos, names, chance).

Unlabelled signals say the input changed, not that the answers got worse: they recommend a re-tune only when the
model's perplexity and the vocabulary agree, and otherwise ask for a labelled sample. ``retune_records`` mixes new
data with a replay share of the old, and ``retune`` keeps training the previous run's adapter into a new run folder
whose manifest names its parent (``ftlib.core.runs.ParentRun``).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ftlib.core.config import DEFAULT_DECODING, Decoding, TrainConfig
from ftlib.core.runs import MANIFEST, load_run
from ftlib.core.tasks import Task
from ftlib.engine.inference import example_losses
from ftlib.measure.evaluate import EvaluationResult, SuccessBar, evaluate_model, judge

# The new tickets' text is scored as the answer to this fixed prompt: the loss then covers the ticket's own tokens
# only, with the same context for every ticket, old or new.
INPUT_PROMPT = "Write the message a customer sent to the help desk."
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")  # words only: amounts, dates and account numbers are new in every batch


@dataclass(frozen=True)
class DriftThresholds:
    """When a signal fires. Choices, not measurements; each says why it is where it is."""

    # The bar's verdict "no": the labelled sample's 95% interval lies wholly below a threshold the team fixed before
    # training (lesson 02). A point estimate below it with the interval straddling ("unclear") is not enough.
    quality_verdict: str = "no"
    # Input loss rise, in nats per token, that the bootstrap interval's LOW end must exceed: beyond sampling noise,
    # and at least exp(0.05) = +5% perplexity, so that a large batch's clear but tiny shift wakes nobody up.
    perplexity_rise: float = 0.05
    # New words: the batch's share of tokens unseen in training, at least twice the same-period reference's share
    # (which counts typos and rare words that every batch brings) and at least 1 word in 100.
    unseen_token_ratio: float = 2.0
    unseen_token_floor: float = 0.01
    # Word distribution: Jensen-Shannon divergence (bits) to the training words, 1.5x the reference batch's at the
    # same batch size. A finite sample diverges from its own population, more the smaller it is; comparing equal
    # sizes cancels most of that, and the 1.5 leaves room for a reference batch that happens to sit close.
    jsd_ratio: float = 1.5


@dataclass(frozen=True)
class VocabularyShift:
    """How a batch's words differ from the training data's."""

    tokens: int
    types: int
    unseen_type_share: float  # distinct words of the batch never seen in training
    unseen_token_share: float  # running words of the batch never seen in training
    jsd: float  # Jensen-Shannon divergence of the word distributions, in bits (0: same, 1: disjoint)


@dataclass(frozen=True)
class PerplexityShift:
    """Mean per-token loss of the new batch's text against the reference batch's, with a 95% bootstrap interval."""

    new_nll: float
    reference_nll: float
    difference: float
    low: float
    high: float

    @property
    def ratio(self) -> float:
        """The new batch's perplexity over the reference's."""
        return math.exp(self.difference)


@dataclass(frozen=True)
class DriftSignal:
    """One measured signal against its threshold."""

    name: str
    value: float
    threshold: float
    fired: bool
    reason: str  # the figure, the threshold and why the threshold is there


@dataclass
class DriftReport:
    """The weekly check's verdict and why: one signal per measurement, the bar's rows on the labelled sample."""

    recommend_retune: bool
    reasons: list[str]
    signals: list[DriftSignal]
    quality: list[dict] = field(default_factory=list)  # ``ftlib.measure.evaluate.judge`` rows; empty without labels

    def rows(self) -> list[dict]:
        """A table: one row per signal."""
        return [
            {"signal": s.name, "value": s.value, "threshold": s.threshold, "fired": "yes" if s.fired else "no"}
            for s in self.signals
        ]

    def text(self) -> str:
        return "\n".join(self.reasons)


def words(text: str) -> list[str]:
    """The lower-cased words of a text (``WORD``)."""
    return WORD.findall(text.lower())


def jensen_shannon(first: Counter, second: Counter) -> float:
    """Jensen-Shannon divergence of two word counts, in bits."""
    total_first, total_second = sum(first.values()), sum(second.values())
    divergence = 0.0
    for word in first.keys() | second.keys():
        p, q = first[word] / total_first, second[word] / total_second
        mean = (p + q) / 2
        divergence += (p * math.log2(p / mean) if p else 0.0) + (q * math.log2(q / mean) if q else 0.0)
    return divergence / 2


def vocabulary_shift(texts: list[str], train_texts: list[str]) -> VocabularyShift:
    """How the words of ``texts`` differ from those of ``train_texts``."""
    train = Counter(word for text in train_texts for word in words(text))
    batch = Counter(word for text in texts for word in words(text))
    tokens = sum(batch.values())
    if not tokens or not train:
        raise ValueError("vocabulary_shift needs words in both the batch and the training texts")
    unseen = [word for word in batch if word not in train]
    return VocabularyShift(
        tokens=tokens,
        types=len(batch),
        unseen_type_share=len(unseen) / len(batch),
        unseen_token_share=sum(batch[word] for word in unseen) / tokens,
        jsd=jensen_shannon(batch, train),
    )


def equal_samples(new: list, reference: list, seed: int = 0) -> tuple[list, list]:
    """Both batches cut to the smaller one's size (seeded samples), so size-dependent figures compare."""
    size = min(len(new), len(reference))
    rng = random.Random(seed)
    return (rng.sample(new, size) if len(new) > size else list(new)), (
        rng.sample(reference, size) if len(reference) > size else list(reference)
    )


def input_records(records: list[dict], task: Task) -> list[dict]:
    """Each record's input text as the completion of ``INPUT_PROMPT``: what ``example_losses`` scores."""
    return [{"prompt": INPUT_PROMPT, "completion": task.input_text(record)} for record in records]


def input_losses(
    model, tokenizer, records: list[dict], task: Task, batch_size: int = 16, max_length: int = 256
) -> list[tuple[float, int]]:
    """Each record's summed loss over its input text's tokens, and the token count."""
    return example_losses(model, tokenizer, input_records(records, task), None, batch_size, max_length)


def perplexity_shift(
    new: list[tuple[float, int]], reference: list[tuple[float, int]], n_resamples: int = 1000, seed: int = 0
) -> PerplexityShift:
    """Token-weighted mean loss of ``new`` minus that of ``reference`` (per-record ``(loss sum, tokens)``), with a
    95% interval from resampling the records of both batches."""
    new_nll, new_tokens = (np.array(column, dtype=float) for column in zip(*new))
    ref_nll, ref_tokens = (np.array(column, dtype=float) for column in zip(*reference))
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(n_resamples):
        a, b = rng.integers(0, len(new_nll), len(new_nll)), rng.integers(0, len(ref_nll), len(ref_nll))
        differences.append(new_nll[a].sum() / new_tokens[a].sum() - ref_nll[b].sum() / ref_tokens[b].sum())
    low, high = np.quantile(differences, [0.025, 0.975])
    mean_new, mean_ref = new_nll.sum() / new_tokens.sum(), ref_nll.sum() / ref_tokens.sum()
    return PerplexityShift(float(mean_new), float(mean_ref), float(mean_new - mean_ref), float(low), float(high))


def _quality_signals(rows: list[dict], thresholds: DriftThresholds) -> list[DriftSignal]:
    signals = []
    for row in rows:
        fired = row["met?"] == thresholds.quality_verdict
        value = row["value"] if row["value"] is not None else float("nan")
        verdict = {"yes": "met", "no": "missed", "unclear": "unclear (label more tickets)", "missing": "not scored"}
        signals.append(
            DriftSignal(
                f"quality: {row['metric']}",
                value,
                row["at least"],
                fired,
                f"{row['metric']} on the labelled new tickets: {value:.3f} {row['95% CI']}, bar {row['at least']}"
                f" -> {verdict.get(row['met?'], row['met?'])}; fires when the whole 95% interval is below the bar"
                " the team fixed before training",
            )
        )
    return signals


def drift_report(
    quality: list[dict] | None,
    perplexity: PerplexityShift | None,
    vocabulary_new: VocabularyShift,
    vocabulary_reference: VocabularyShift,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """The verdict from measured figures (``check_drift`` measures them; tests pass controlled ones).

    Recommends a re-tune when a success-bar metric is missed on the labelled sample, or when the input perplexity
    rose and the vocabulary moved too (two independent views of the same change). A signal that fires alone asks
    for a labelled sample instead.

    Args:
        quality: ``ftlib.measure.evaluate.judge`` rows of the labelled new tickets, or None without labels.
        perplexity: the new batch's input loss against the old test tickets', or None when not measured.
        vocabulary_new, vocabulary_reference: the new batch and the old test tickets against the training data,
            at the same batch size (``equal_samples``).
    """
    thresholds = thresholds or DriftThresholds()
    signals = _quality_signals(quality or [], thresholds)
    if perplexity is not None:
        signals.append(
            DriftSignal(
                "input perplexity rise (nats/token)",
                perplexity.difference,
                thresholds.perplexity_rise,
                perplexity.low > thresholds.perplexity_rise,
                f"input loss {perplexity.new_nll:.3f} nats/token on the new tickets vs {perplexity.reference_nll:.3f}"
                f" on the old test tickets: {perplexity.difference:+.3f} (95% CI [{perplexity.low:+.3f},"
                f" {perplexity.high:+.3f}], perplexity x{perplexity.ratio:.2f}); fires when the interval's low end"
                f" is above +{thresholds.perplexity_rise} (perplexity +{math.expm1(thresholds.perplexity_rise):.0%}):"
                " beyond sampling noise and big enough to matter",
            )
        )
    share, reference_share = vocabulary_new.unseen_token_share, vocabulary_reference.unseen_token_share
    bar = max(thresholds.unseen_token_ratio * reference_share, thresholds.unseen_token_floor)
    signals.append(
        DriftSignal(
            "unseen-word share",
            share,
            bar,
            share > bar,
            f"{share:.2%} of the new tickets' words never occur in the training data"
            f" ({vocabulary_new.unseen_type_share:.1%} of distinct words), vs {reference_share:.2%} for the old test"
            f" tickets; fires above {thresholds.unseen_token_ratio:g}x the old tickets' share and at least"
            f" {thresholds.unseen_token_floor:.0%} ({bar:.2%}): the old tickets show what typos and rare words a"
            " same-period batch already brings",
        )
    )
    jsd_bar = thresholds.jsd_ratio * vocabulary_reference.jsd
    signals.append(
        DriftSignal(
            "word distribution JSD (bits)",
            vocabulary_new.jsd,
            jsd_bar,
            vocabulary_new.jsd > jsd_bar,
            f"Jensen-Shannon divergence from the training words {vocabulary_new.jsd:.4f} bits vs"
            f" {vocabulary_reference.jsd:.4f} for the old test tickets at the same size; fires above"
            f" {thresholds.jsd_ratio:g}x the old tickets' ({jsd_bar:.4f}): a same-period sample diverges by chance too",
        )
    )
    fired = {s.name for s in signals if s.fired}
    quality_missed = any(name.startswith("quality: ") for name in fired)
    perplexity_rose = "input perplexity rise (nats/token)" in fired
    vocabulary_moved = bool(fired & {"unseen-word share", "word distribution JSD (bits)"})
    recommend = quality_missed or (perplexity_rose and vocabulary_moved)
    if quality_missed:
        verdict = "Re-tune: the model misses the success bar on the labelled new tickets."
    elif recommend:
        verdict = "Re-tune: the new tickets are harder for the model and their words moved (no bar missed yet)."
    elif fired:
        verdict = "Watch: one kind of signal fired; label a sample of the new tickets before deciding."
    else:
        verdict = "No re-tune: no signal fired."
    lines = [verdict] + [f"[{'fired' if s.fired else 'quiet'}] {s.reason}" for s in signals]
    return DriftReport(recommend, lines, signals, list(quality or []))


def check_drift(
    model,
    tokenizer,
    task: Task,
    new_records: list[dict],
    reference_records: list[dict],
    train_records: list[dict],
    labelled: list[dict] | None = None,
    bar: SuccessBar | None = None,
    decoding: Decoding = DEFAULT_DECODING,
    thresholds: DriftThresholds | None = None,
    seed: int = 0,
    labelled_result: EvaluationResult | None = None,
) -> DriftReport:
    """Measure the drift of ``new_records`` (unlabelled is enough) and report it.

    Args:
        model, tokenizer: the tuned model in use (``ftlib.engine.adapters.load_for_eval``).
        new_records: this week's tickets; only their input text is read.
        reference_records: the old test tickets (the same period as training), the baseline of every signal.
        train_records: the data the model trained on: its vocabulary.
        labelled: a small labelled sample of the new tickets, scored against ``bar``; None to skip quality.
        bar: the success bar (``ftlib.measure.evaluate.load_success_bar``); needed with ``labelled``.
        labelled_result: the labelled sample's ``evaluate_model`` result when it is already scored (it is then not
            generated again); ``labelled`` is not needed with it.
    """
    new_sample, reference_sample = equal_samples(new_records, reference_records, seed)
    train_texts = [task.input_text(record) for record in train_records]
    vocabulary_new = vocabulary_shift([task.input_text(r) for r in new_sample], train_texts)
    vocabulary_reference = vocabulary_shift([task.input_text(r) for r in reference_sample], train_texts)
    perplexity = perplexity_shift(
        input_losses(model, tokenizer, new_sample, task, decoding.batch_size),
        input_losses(model, tokenizer, reference_sample, task, decoding.batch_size),
        seed=seed,
    )
    quality = None
    if labelled or labelled_result:
        if bar is None:
            raise ValueError("a labelled sample is scored against a success bar: pass bar=")
        result = labelled_result or evaluate_model(model, tokenizer, labelled, task, decoding)
        quality = judge({"new tickets": result}, bar)
    return drift_report(quality, perplexity, vocabulary_new, vocabulary_reference, thresholds)


def retune_records(new: list[dict], old: list[dict], replay_share: float, seed: int = 0) -> list[dict]:
    """Every new record plus old ones replayed, so that old records make up ``replay_share`` of the result; shuffled.

    Replay keeps what the model learnt from the old data while it learns the new (0: new data only). The old
    records are a seeded sample without repeats, all of them at most.
    """
    if not 0 <= replay_share < 1:
        raise ValueError(f"replay_share must be in [0, 1), got {replay_share}")
    rng = random.Random(seed)
    wanted = round(len(new) * replay_share / (1 - replay_share))
    if wanted > len(old):
        raise ValueError(f"replay_share {replay_share} needs {wanted} old records, only {len(old)} given")
    mixed = list(new) + rng.sample(list(old), wanted)
    rng.shuffle(mixed)
    return mixed


def retune(
    previous_run: str | Path,
    train_records: list[dict],
    val_records: list[dict],
    output_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    task: Task | None = None,
    device=None,
    source: str = "auto",
    replace: bool = False,
):
    """Keep training ``previous_run``'s adapter on new data, as a new run whose manifest names its parent.

    The base model comes from the previous run's manifest, and so does the config unless one is given (the
    adapter's rank and targets win either way). Returns ``ftlib.engine.train.TrainResult``.

    Args:
        replace: False (the default) refuses an ``output_dir`` that already holds a run; True re-tunes into it
            anyway, the run there kept as ``<output_dir>.previous`` as every training rerun keeps it (a lesson
            that runs again).
    """
    from ftlib.engine.train import train

    previous, output_dir = Path(previous_run), Path(output_dir)
    if (output_dir / MANIFEST).exists() and not replace:
        raise FileExistsError(f"{output_dir} already holds a run: pick a new folder for the re-tune")
    record = load_run(previous)
    return train(
        record.base_model,
        train_records,
        val_records,
        output_dir,
        config=config or record.config,
        task=task,
        device=device,
        source=source,
        adapter=previous,
    )
