"""Plots for the lessons: loss curves, run comparisons, label distributions and confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import matplotlib.pyplot as plt
import numpy as np

from ftlib.core.runs import RunRecord
from ftlib.measure.stats import Estimate


def _save(fig, path: str | Path | None):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def plot_loss_curves(histories: dict[str, dict], path: str | Path | None = None, title: str = "Loss"):
    """Train loss per step (thin) and validation loss per eval (markers), one colour per run.

    Args:
        histories: run name -> history as returned by ``ftlib.engine.train.train`` (``{"train": [...], "val": [...]}``).
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    for index, (name, history) in enumerate(histories.items()):
        colour = f"C{index}"
        train = history.get("train", [])
        val = history.get("val", [])
        if train:
            ax.plot(
                [p["step"] for p in train],
                [p["loss"] for p in train],
                color=colour,
                alpha=0.6,
                lw=1,
                label=f"{name} train",
            )
        if val:
            ax.plot(
                [p["step"] for p in val], [p["loss"] for p in val], color=colour, marker="o", lw=2, label=f"{name} val"
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (answer tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


class Scored(Protocol):
    """Anything scored with intervals: an ``EvaluationResult``, a lesson-06 ``Outcome``."""

    metrics: dict[str, Estimate]


def plot_metric_comparison(
    results: dict[str, Scored],
    metrics: list[str],
    path: str | Path | None = None,
    title: str = "Held-out task metrics (95% bootstrap intervals)",
):
    """Grouped bars of several runs' metrics, each with its interval as an error bar.

    Args:
        results: run name -> its scores (an ``EvaluationResult`` or a lesson-06 ``Outcome``). A point estimate
            outside its bootstrap interval (macro-F1 can be) draws no bar on the side it passed.
    """

    def error(stat: Estimate, bound: str) -> float:
        """Length of the bar from the value to ``bound``: 0 when the bound is on the wrong side."""
        return max(0.0, stat.value - stat.low if bound == "low" else stat.high - stat.value)

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics)), 4))
    width = 0.8 / max(1, len(results))
    for index, (name, result) in enumerate(results.items()):
        stats = [result.metrics[m] for m in metrics]
        xs = [i + index * width for i in range(len(metrics))]
        values = [s.value for s in stats]
        errors = [[error(s, "low") for s in stats], [error(s, "high") for s in stats]]
        ax.bar(xs, values, width, yerr=errors, capsize=3, label=name, color=f"C{index}")
    ax.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(metrics))], metrics, rotation=15)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_label_distribution(
    counts: dict[str, dict[str, int]], path: str | Path | None = None, title: str = "Label distribution"
):
    """Side-by-side bars of label counts for several splits or stages."""
    labels = sorted({label for split in counts.values() for label in split})
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels)), 3.5))
    width = 0.8 / max(1, len(counts))
    for index, (name, split) in enumerate(counts.items()):
        total = sum(split.values()) or 1
        ax.bar(
            [i + index * width for i in range(len(labels))],
            [split.get(label, 0) / total for label in labels],
            width,
            label=name,
        )
    ax.set_xticks([i + width * (len(counts) - 1) / 2 for i in range(len(labels))], labels, rotation=20)
    ax.set_ylabel("share of records")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_token_lengths(
    lengths: list[int],
    max_length: int | None = None,
    path: str | Path | None = None,
    title: str = "Tokens per example (prompt + answer)",
):
    """Histogram of example lengths in tokens, with the training budget marked."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(lengths, bins=40, color="C0", alpha=0.8)
    if max_length:
        ax.axvline(max_length, color="C3", ls="--", label=f"max_length = {max_length}")
        ax.legend()
    ax.set_xlabel("tokens")
    ax.set_ylabel("examples")
    ax.set_title(title)
    return _save(fig, path)


def plot_confusion(
    columns: list[str], matrix, rows: list[str], path: str | Path | None = None, title: str = "Confusion matrix"
):
    """A confusion matrix: reference labels down, predicted labels across, counts in the cells."""
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 2, 0.6 * len(rows) + 1.6))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    peak = matrix.max() or 1
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


# The estimate's components from the bottom of a bar up: the runtime and the weights first, what a step adds on top.
# The order is this plot's; the set is ``ftlib.engine.memory.MemoryEstimate.COMPONENTS`` (tests/test_plots.py checks).
MEMORY_STACK = (
    "baseline",
    "weights",
    "mapped_checkpoint",
    "adapters",
    "optimizer",
    "gradients",
    "activations",
    "workspace",
    "allocator",
)


def plot_memory_breakdown(
    records: dict[str, RunRecord],
    path: str | Path | None = None,
    title: str = "Peak training memory: estimate by component vs measured",
):
    """One stacked bar per run (the estimate's components, GB) with the measured peak as a black marker.

    Every component of ``MemoryEstimate.COMPONENTS`` is stacked, so a bar reaches the estimate's total.
    """
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(records)), 4))
    names = list(records)
    bottoms = np.zeros(len(names))
    for index, component in enumerate(MEMORY_STACK):
        heights = np.array([records[n].memory.estimate.components_gb.get(component, 0.0) for n in names])
        if heights.any():
            ax.bar(names, heights, bottom=bottoms, label=component, color=f"C{index}")
            bottoms += heights
    # The measured peak as a line across its bar, in data units: a marker sized in points ran past a lone bar's
    # axes into the legend.
    measured = [measured_peak_gb(records[n]) for n in names]
    x = np.arange(len(names))
    ax.hlines(measured, x - 0.4, x + 0.4, color="black", linewidths=3, label="measured peak", zorder=3)
    ax.set_ylim(0, 1.1 * max([*bottoms, *measured, 1e-3]))
    ax.set_ylabel("GB")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    return _save(fig, path)


def measured_peak_gb(record: RunRecord) -> float:
    """A run's measured peak in GB: CUDA max allocated on a GPU, peak RSS on a CPU (the manifest stores MiB)."""
    return record.memory.measured.peak_gb


def plot_set_comparison(
    results_by_set: dict[str, dict[str, dict]],
    metrics: list[str],
    path: str | Path | None = None,
    title: str = "The same runs on two test sets (95% bootstrap intervals)",
):
    """One panel per metric: each run's value on every test set, side by side, with its interval.

    Args:
        results_by_set: set name -> run name -> its ``ftlib.measure.evaluate.EvaluationResult``.
    """
    sets = list(results_by_set)
    runs = [run for run in results_by_set[sets[0]] if all(run in results_by_set[s] for s in sets)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(6, 3.2 * len(metrics)), 3.8), squeeze=False)
    width = 0.8 / max(1, len(sets))
    for ax, metric in zip(axes[0], metrics):
        for index, name in enumerate(sets):
            stats = [results_by_set[name][run].metrics[metric] for run in runs]
            xs = [i + index * width for i in range(len(runs))]
            values = [s.value for s in stats]
            errors = [[max(0.0, s.value - s.low) for s in stats], [max(0.0, s.high - s.value) for s in stats]]
            ax.bar(xs, values, width, yerr=errors, capsize=3, label=name, color=f"C{index}")
        ax.set_xticks([i + width * (len(sets) - 1) / 2 for i in range(len(runs))], runs, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title(metric)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_learning_curve(
    points: dict[int, dict[str, Estimate]],
    metrics: list[str],
    path: str | Path | None = None,
    title: str = "Learning curve (95% bootstrap intervals)",
):
    """Each metric against the number of training examples (log scale), its interval as a shaded band.

    Args:
        points: training-set size -> ``{metric: Estimate}``.
    """
    sizes = sorted(points)
    fig, ax = plt.subplots(figsize=(7, 4))
    for index, metric in enumerate(metrics):
        stats = [points[n][metric] for n in sizes if metric in points[n]]
        if len(stats) != len(sizes):
            continue
        colour = f"C{index}"
        ax.plot(sizes, [s.value for s in stats], color=colour, marker="o", lw=2, label=metric)
        ax.fill_between(sizes, [s.low for s in stats], [s.high for s in stats], color=colour, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training examples (same step budget)")
    ax.set_ylabel("score on the test split")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_validation_curves(
    histories: dict[str, dict],
    path: str | Path | None = None,
    title: str = "Validation loss",
    final: dict[str, Estimate] | None = None,
):
    """Validation loss per evaluation, one line per run, overlaid; no training loss, so the runs stay readable.

    Args:
        histories: run name -> ``ftlib.engine.train`` history (its ``val`` points are drawn).
        final: run name -> the kept checkpoint's loss with its interval, drawn as an error bar
            after the last step.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    last = max((p["step"] for h in histories.values() for p in h.get("val", [])), default=0)
    for index, (name, history) in enumerate(histories.items()):
        colour = f"C{index}"
        val = history.get("val", [])
        if val:
            ax.plot([p["step"] for p in val], [p["loss"] for p in val], color=colour, marker="o", lw=2, label=name)
        if final and name in final:
            stat = final[name]
            x = last * (1.04 + 0.02 * index)
            err = [[stat.value - stat.low], [stat.high - stat.value]]
            ax.errorbar([x], [stat.value], yerr=err, color=colour, marker="s", capsize=3)
    ax.set_xlabel("optimizer step (squares: the kept checkpoint, 95% interval)" if final else "optimizer step")
    ax.set_ylabel("validation cross-entropy (answer tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
