"""Forgetting: how far a tuned model moved from its base on prompts outside its task, and how to mix general data
into training so that it moves less.

Two measures, each per prompt with a 95% bootstrap interval over prompts (``ftlib.measure.stats.bootstrap_interval``):

- the divergence: the mean per-token KL(base || tuned) of the next-token distributions, teacher-forced over the
  prompt and the base model's greedy continuation, so both models read exactly the same tokens. 0 means the tuned
  model predicts every one of those tokens as its base does; it needs no reference answer.
- the other task's score: a sample task the model was not tuned on (``listings``), base and tuned, scored by
  ``ftlib.measure.evaluate.score_answers`` as lesson 05 scores any run, and the paired difference tuned - base.

General data for training goes in as ``messages`` records (a user prompt and an assistant answer): ``to_messages``
reads that shape for any task, so the mixed list trains with the task's own spec, unchanged (``mix_general``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ftlib.core.config import Decoding
from ftlib.core.tasks import Task
from ftlib.data.batches import prompt_text
from ftlib.data.records import read_jsonl
from ftlib.engine.inference import decode_answer, generate_tokens
from ftlib.measure.evaluate import per_example_scores, score_answers
from ftlib.measure.stats import Estimate, paired_difference

GENERIC_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "samples" / "generic_prompts.jsonl"
GENERIC_SOURCE = "generic"
# A probe's continuation needs fewer tokens than a ticket answer: the divergence is read on the first 64.
PROBE_DECODING = Decoding(batch_size=16, max_new_tokens=64)


@dataclass(frozen=True)
class Probe:
    """One prompt outside the task: where it comes from, its id, and its chat messages (no answer)."""

    source: str  # "generic", or the name of the other task (e.g. "listings")
    id: str
    messages: list[dict]


@dataclass(frozen=True)
class PromptDivergence:
    """KL(base || tuned) on one probe: the mean per token over prompt + continuation, and over the continuation."""

    source: str
    id: str
    tokens: int  # next-token positions scored (prompt + continuation - 1)
    kl: float  # nats per token, all positions
    kl_continuation: float  # nats per token, the positions that predict the base's continuation only


@dataclass(frozen=True)
class BaseReference:
    """What the base model gives once, for every tuned model measured against it: each probe's greedy
    continuation tokens, and its answers on the other task's records."""

    continuations: list[list[int]]  # aligned with the probes
    task_predictions: list[str]  # the base's answers to ``task_records``, aligned


@dataclass
class ForgettingReport:
    """The divergences of one tuned model from its base, and the other task's scores of both."""

    label: str
    divergences: list[PromptDivergence]
    kl: dict[str, Estimate]  # source -> mean KL per token with its interval; also "all"
    kl_continuation: dict[str, Estimate]
    prompts: dict[str, int]  # source -> how many prompts its KL averages
    task: str | None = None
    task_scores: dict[str, PairedScores] = field(default_factory=dict)  # metric -> base, tuned and the difference
    task_answers: list[dict] = field(default_factory=list)  # per record: id, base answer, tuned answer

    def rows(self) -> list[dict]:
        """Table rows: one per divergence (by source) and one per task metric, each with its 95% interval."""
        rows = []
        for source, stat in self.kl.items():
            answer = self.kl_continuation[source]
            rows.append(
                {
                    "model": self.label,
                    "measure": f"KL(base||tuned) per token, {source} (n={self.prompts[source]})",
                    "value": round(stat.value, 4),
                    "95% CI": stat.interval_text(4),
                    "continuation only": answer.text(4),
                }
            )
        for metric, stats in self.task_scores.items():
            gap = stats.difference
            rows.append(
                {
                    "model": self.label,
                    "measure": f"{self.task} {metric} (n={stats.examples})",
                    "value": round(stats.tuned.value, 4),
                    "95% CI": stats.tuned.interval_text(4),
                    "base": stats.base.text(4),
                    "tuned - base": f"{gap.value:+.4f} [{gap.low:+.4f}, {gap.high:+.4f}]",
                }
            )
        return rows

    def as_dict(self) -> dict:
        saved = asdict(self)
        saved["divergences"] = saved.pop("divergences")  # last: the per-prompt detail after the summary
        return saved


def read_generic(split: str | None = None, path: str | Path = GENERIC_PROMPTS) -> list[dict]:
    """The hand-written general prompts (``id, split, kind, prompt, answer``); ``split`` "measure" or "mix" picks
    the ones kept for measuring or for mixing into training (never both: the mix would train on the probes)."""
    records = read_jsonl(path)
    return [dict(r) for r in records if split is None or r["split"] == split]


def general_messages(record: dict) -> list[dict]:
    """A general prompt as a chat: the user turn alone, as a user would send it (no task instruction)."""
    return [{"role": "user", "content": record["prompt"]}]


def probes(generic: list[dict], task_records: list[dict] = (), task: Task | None = None) -> list[Probe]:
    """Probes of the general prompts and of another task's records (its zero-shot prompt, as lesson 05 asks)."""
    found = [Probe(GENERIC_SOURCE, str(r["id"]), general_messages(r)) for r in generic]
    if task_records and task is None:
        raise ValueError("task_records need their task to be turned into prompts")
    return found + [Probe(task.name, str(r.get("id", i)), task.prompt_messages(r)) for i, r in enumerate(task_records)]


def mix_general(train_records: list[dict], general_records: list[dict], share: float, seed: int = 0) -> list[dict]:
    """The training records with general prompt/answer pairs added, so that they are ``share`` of the result.

    Each pair becomes a ``messages`` record (user prompt, assistant answer), which ``ftlib.data.records.to_messages``
    trains whatever the task. ``round(share * n / (1 - share))`` pairs join the ``n`` task records, drawn in
    shuffled rounds over ``general_records`` (so each repeats as evenly as possible), then everything is shuffled.
    The same arguments give the same list.

    Raises:
        ValueError: ``share`` outside [0, 1), or a positive share without general records.
    """
    if not 0 <= share < 1:
        raise ValueError(f"share must be in [0, 1), got {share}")
    wanted = round(share * len(train_records) / (1 - share))
    if wanted and not general_records:
        raise ValueError(f"share {share} asks for {wanted} general records, but none were given")
    rng = random.Random(seed)
    drawn: list[dict] = []
    while len(drawn) < wanted:
        round_ = list(general_records)
        rng.shuffle(round_)
        drawn += round_[: wanted - len(drawn)]
    mixed = [dict(r) for r in train_records] + [
        {
            "id": f"general-{r['id']}-{i}",
            "messages": [*general_messages(r), {"role": "assistant", "content": r["answer"]}],
        }
        for i, r in enumerate(drawn)
    ]
    rng.shuffle(mixed)
    return mixed


@torch.no_grad()
def token_kl(base_model, tuned_model, ids: list[int], start: int) -> tuple[float, float]:
    """Mean per-token KL(base || tuned) of the next-token distributions along ``ids`` (teacher-forced): over
    every position, and over the positions from ``start`` on (those predicting ``ids[start:]``)."""
    tensor = torch.tensor([ids], device=base_model.device)
    base = torch.log_softmax(base_model(input_ids=tensor).logits[0, :-1].float(), dim=-1)
    tuned = torch.log_softmax(tuned_model(input_ids=tensor.to(tuned_model.device)).logits[0, :-1].float(), dim=-1)
    per_token = (base.exp() * (base - tuned.to(base.device))).sum(dim=-1).clamp_min(0)  # rounding can dip below 0
    return float(per_token.mean()), float(per_token[start - 1 :].mean())


def base_reference(
    base_model,
    tokenizer,
    prompts: list[Probe],
    task_records: list[dict] = (),
    task: Task | None = None,
    decoding: Decoding = PROBE_DECODING,
) -> BaseReference:
    """The base model's greedy continuation of every probe (and so its answers to the probes of ``task``)."""
    continuations = generate_tokens(base_model, tokenizer, [p.messages for p in prompts], decoding)
    answers = [
        decode_answer(tokenizer, ids) for p, ids in zip(prompts, continuations) if task and p.source == task.name
    ]
    return BaseReference(continuations, answers if task_records else [])


@dataclass(frozen=True)
class PairedScores:
    """One metric of the other task for the base and the tuned model, and the paired difference tuned - base."""

    base: Estimate
    tuned: Estimate
    difference: Estimate
    examples: int


def task_comparison(
    base_answers: list[str], tuned_answers: list[str], records: list[dict], task: Task
) -> dict[str, PairedScores]:
    """Each metric of ``task`` for base and tuned (``score_answers``) and the paired difference tuned - base."""
    base = score_answers(base_answers, records, task)
    tuned = score_answers(tuned_answers, records, task)
    base_rows = [per_example_scores(a, r, task) for a, r in zip(base_answers, records)]
    tuned_rows = [per_example_scores(a, r, task) for a, r in zip(tuned_answers, records)]
    out = {}
    for metric in tuned:
        if metric not in base or metric not in tuned_rows[0]:
            continue  # macro-F1 has no per-example value to pair
        difference = paired_difference([t[metric] for t in tuned_rows], [b[metric] for b in base_rows])
        out[metric] = PairedScores(base[metric], tuned[metric], difference, len(records))
    return out


def measure(
    base_model,
    tuned_model,
    tokenizer,
    prompts: list[Probe],
    task_records: list[dict] = (),
    task: Task | None = None,
    label: str = "tuned",
    reference: BaseReference | None = None,
    decoding: Decoding = PROBE_DECODING,
) -> ForgettingReport:
    """How far ``tuned_model`` moved from ``base_model`` on ``prompts`` (``probes``), with 95% intervals.

    Two separate model objects (a ``PeftModel`` put on the base object itself changes the base too).
    ``task_records``/``task``: the other task's records, in the same order as their probes, scored for both
    models. ``reference``: the base's ``base_reference`` when several tuned models are measured against it.
    """
    if task_records and len([p for p in prompts if task and p.source == task.name]) != len(task_records):
        raise ValueError("task_records must be the records of the task's probes, in the same order")
    reference = reference or base_reference(base_model, tokenizer, prompts, task_records, task, decoding)
    base_model.eval()
    tuned_model.eval()
    divergences = []
    for probe, continuation in zip(prompts, reference.continuations):
        prompt = tokenizer(prompt_text(tokenizer, probe.messages), add_special_tokens=False)["input_ids"]
        kl, kl_continuation = token_kl(base_model, tuned_model, prompt + continuation, len(prompt))
        divergences.append(
            PromptDivergence(probe.source, probe.id, len(prompt) + len(continuation) - 1, kl, kl_continuation)
        )
    sources = sorted({d.source for d in divergences}, key=lambda s: (s != GENERIC_SOURCE, s))
    groups = {s: [d for d in divergences if d.source == s] for s in sources} | {"all": divergences}
    report = ForgettingReport(
        label,
        divergences,
        {s: Estimate.of_mean([d.kl for d in group]) for s, group in groups.items()},
        {s: Estimate.of_mean([d.kl_continuation for d in group]) for s, group in groups.items()},
        {s: len(group) for s, group in groups.items()},
    )
    if task_records:
        task_prompts = [p.messages for p in prompts if p.source == task.name]
        ids = generate_tokens(tuned_model, tokenizer, task_prompts, decoding)
        tuned_answers = [decode_answer(tokenizer, row) for row in ids]
        report.task = task.name
        report.task_scores = task_comparison(reference.task_predictions, tuned_answers, list(task_records), task)
        report.task_answers = [
            {"id": r.get("id"), "base": b, "tuned": t}
            for r, b, t in zip(task_records, reference.task_predictions, tuned_answers)
        ]
    return report


def comparison_rows(reports: list[ForgettingReport]) -> list[dict]:
    """Every report's rows in one table (the notebook's side-by-side of LoRA, full fine-tuning and the mix)."""
    return [row for report in reports for row in report.rows()]
