"""Computed "Reading it" sentences: a run's own numbers, put in words for a notebook to print under a plot or table.

What a plot shows depends on the profile (3 smoke steps or a full cpu run), so a conclusion that quotes numbers
is computed here, never typed into a notebook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ftlib.core.runs import RunRecord

if TYPE_CHECKING:
    from ftlib.lessons.choice import CandidateScores


def _points(history: dict, kind: str) -> list[tuple[int, float]]:
    return [(int(point["step"]), float(point["loss"])) for point in history.get(kind, [])]


def loss_reading(history: dict, best_step: int | None = None) -> str:
    """What one run's loss curves say: how far the validation loss fell, whether it rose again, which step was kept.

    Args:
        history: ``{"train": [{"step", "loss"}, ...], "val": [...]}`` as ``ftlib.engine.train.train`` returns it.
        best_step: the step whose checkpoint the run kept (``RunRecord.checkpoints.best_step``), if known.
    """
    val, train = _points(history, "val"), _points(history, "train")
    if not val:
        return "No validation loss was recorded, so the curves cannot say whether the model generalises."
    (first_step, first), (last_step, last) = val[0], val[-1]
    lowest_step, lowest = min(val, key=lambda point: point[1])
    sentences = []
    if len(val) == 1:
        sentences.append(
            f"One validation point only (step {first_step}, loss {first:.3f}): too few steps to read a trend."
        )
    else:
        change = "fell" if last < first else "did not fall"
        sentences.append(
            f"The validation loss {change} from {first:.3f} (step {first_step}) to {last:.3f} (step {last_step})."
        )
        if lowest_step != last_step and last > lowest:
            sentences.append(
                f"It was lowest at step {lowest_step} ({lowest:.3f}) and rose after: the model started to fit the"
                " training examples rather than the task."
            )
    if train and len(val) > 1:
        gap = last - train[-1][1]
        sentences.append(f"At the end it is {gap:+.3f} from the last training loss ({train[-1][1]:.3f}).")
    if best_step is not None:
        sentences.append(f"The run keeps the checkpoint of step {best_step}, where the validation loss was lowest.")
    return " ".join(sentences)


def memory_reading(record: RunRecord) -> str:
    """Estimate against measurement for one run, and the part of the estimate that dominates."""
    estimate, measured = record.memory.estimate, record.memory.measured.peak_gb
    parts = {name: gb for name, gb in estimate.components_gb.items() if gb > 0}
    largest = max(parts, key=parts.get) if parts else None
    sentence = (
        f"Estimated peak {estimate.total_gb:.2f} GB, measured {measured:.2f} GB"
        f" (the estimate is {estimate.total_gb / measured:.2f} x the measurement)."
    )
    if largest is not None:
        share = parts[largest] / estimate.total_gb
        sentence += f" The largest part of the estimate is {largest.removesuffix(' GB')}: {share:.0%} of it."
    return sentence


def qlora_vs_lora(qlora: RunRecord, lora: RunRecord | None, histories: dict[str, dict] | None = None) -> str:
    """QLoRA against lesson 03's LoRA run of the same run folder on loss, measured memory and training speed.

    With no LoRA run (lesson 03 has not run with this ``run_dir``) it says so and describes QLoRA alone. Where QLoRA
    ran fewer steps than LoRA (lesson 04's reproduction on a CPU), the losses are compared at the last validation
    step both runs have (``histories``: ``{"QLoRA": ..., "LoRA": ...}``) and the speed per token, not the total time.
    """
    q = qlora.metrics
    if lora is None:
        return (
            f"QLoRA alone: final validation loss {q.final_val_loss:.3f}, measured peak"
            f" {qlora.memory.measured.peak_gb:.2f} GB, {q.train_seconds:.0f} s of training. For the comparison with"
            " LoRA, run 03_lora.ipynb with the same run_dir, then this notebook again."
        )
    lo = lora.metrics
    memory_ratio = qlora.memory.measured.peak_gb / lora.memory.measured.peak_gb
    memory = (
        f" Measured peak memory: QLoRA {qlora.memory.measured.peak_gb:.2f} GB,"
        f" LoRA {lora.memory.measured.peak_gb:.2f} GB ({memory_ratio:.2f} x)."
    )
    if qlora.checkpoints.steps_run == lora.checkpoints.steps_run:
        loss_gap = q.final_val_loss - lo.final_val_loss
        time_ratio = q.train_seconds / lo.train_seconds if lo.train_seconds else float("nan")
        return (
            f"Final validation loss: QLoRA {q.final_val_loss:.3f}, LoRA {lo.final_val_loss:.3f} ({loss_gap:+.3f}:"
            f" QLoRA ends {_closer(loss_gap, lo.final_val_loss)} LoRA).{memory} Training time: QLoRA"
            f" {q.train_seconds:.0f} s, LoRA {lo.train_seconds:.0f} s ({time_ratio:.2f} x)."
        )
    speed_ratio = q.train_tokens_per_second / lo.train_tokens_per_second if lo.train_tokens_per_second else float("nan")
    speed = (
        f" Training speed: QLoRA {q.train_tokens_per_second:.0f} tokens/s, LoRA {lo.train_tokens_per_second:.0f}"
        f" ({speed_ratio:.2f} x)."
    )
    histories = histories or {}
    q_val = dict(_points(histories.get("QLoRA", {}), "val"))
    lo_val = dict(_points(histories.get("LoRA", {}), "val"))
    common = sorted(set(q_val) & set(lo_val))
    steps = f"QLoRA ran {qlora.checkpoints.steps_run} steps, LoRA {lora.checkpoints.steps_run}"
    if not common:
        return f"{steps}, and they share no validation step, so their losses cannot be compared.{memory}{speed}"
    step = common[-1]
    loss_gap = q_val[step] - lo_val[step]
    return (
        f"{steps}. Validation loss at step {step}, the last both ran: QLoRA {q_val[step]:.3f}, LoRA"
        f" {lo_val[step]:.3f} ({loss_gap:+.3f}: QLoRA {_closer(loss_gap, lo_val[step])} LoRA so far).{memory}{speed}"
    )


def _closer(gap: float, reference: float) -> str:
    """ "close to" within 5% of the reference loss, else "above" or "below"."""
    return "close to" if abs(gap) <= 0.05 * reference else ("above" if gap > 0 else "below")


def confusion_reading(columns: list[str], matrix: np.ndarray, labels: list[str], field: str) -> str:
    """The most frequent mix-up in one field's confusion matrix, and how many answers were invalid."""
    matrix = np.asarray(matrix)
    total = int(matrix.sum())
    if total == 0:
        return f"{field}: no test answers to count."
    right = int(np.trace(matrix[:, : len(labels)]))
    invalid = int(matrix[:, len(labels) :].sum())
    sentence = f"{field}: {right} of {total} right, {invalid} invalid (no JSON or a label outside the schema)."
    wrong = matrix[:, : len(labels)].copy()
    np.fill_diagonal(wrong, 0)
    if wrong.max() > 0:
        row, column = np.unravel_index(int(wrong.argmax()), wrong.shape)
        count = int(wrong.max())
        times = "once" if count == 1 else f"{count} times"
        sentence += f" The most frequent mix-up: {labels[row]} answered as {columns[column]} ({times})."
    return sentence


def few_shot_reading(measured: dict[str, CandidateScores], metric: str) -> str:
    """Per measured candidate: what three solved examples in the prompt did to ``metric``, by interval overlap.

    Args:
        measured: candidate name -> its scores (``ftlib.lessons.choice.measure_candidate``).
    """
    lines = []
    for name, result in measured.items():
        zero, few = result.zero_shot.metrics[metric], result.few_shot.metrics[metric]
        if few.above(zero):
            effect = "clearly raised it"
        elif few.below(zero):
            effect = "clearly lowered it"
        else:
            effect = "made no clear difference (the intervals overlap)"
        lines.append(
            f"{name}: {metric} {zero.value:.2f} zero-shot, {few.value:.2f} few-shot: three examples in the"
            f" prompt {effect}."
        )
    return "\n".join(lines)
