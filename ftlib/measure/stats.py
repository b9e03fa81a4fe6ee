"""Statistics for every measured claim: bootstrap intervals of a mean, paired differences and their verdicts.

One module, so that lesson 05's metrics, lesson 06's comparisons and lesson 07's forgetting and drift checks all
put intervals on their numbers the same way (a seeded percentile bootstrap over the examples).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A measured value with its 95% interval: how every metric, loss or rate in the course is reported."""

    value: float
    low: float
    high: float

    def interval_text(self, digits: int = 2) -> str:
        return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def text(self, digits: int = 2) -> str:
        """``0.95 [0.91, 0.98]``."""
        return f"{self.value:.{digits}f} {self.interval_text(digits)}"

    def above(self, other: Estimate) -> bool:
        """Higher beyond noise: this interval lies wholly above the other's."""
        return self.low > other.high

    def below(self, other: Estimate) -> bool:
        """Lower beyond noise: this interval lies wholly below the other's."""
        return self.high < other.low

    def overlaps(self, other: Estimate) -> bool:
        return not (self.above(other) or self.below(other))

    def verdict(self, threshold: float) -> str:
        """Against a bar: ``yes`` when all of the interval is at or above it, ``no`` when all of it is below,
        ``unclear`` when it straddles it (more examples would decide)."""
        return "yes" if self.low >= threshold else "no" if self.high < threshold else "unclear"

    @classmethod
    def of_mean(cls, values: list[float], seed: int = 0) -> Estimate:
        """The mean of per-example scores with its percentile bootstrap interval."""
        low, high = bootstrap_interval(values, seed=seed)
        return cls(sum(values) / len(values) if values else float("nan"), low, high)


def bootstrap_interval(
    values: list[float], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-example scores."""
    if not values:
        return (float("nan"), float("nan"))
    scores = np.asarray(values, dtype=float)
    resampled = np.random.default_rng(seed).integers(0, len(scores), size=(n_resamples, len(scores)))
    means = scores[resampled].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return (float(low), float(high))


def compare(a: Estimate, b: Estimate) -> str:
    """``higher``, ``lower`` or ``within noise``: ``a`` against ``b``, by whether their 95% intervals overlap."""
    return "higher" if a.above(b) else "lower" if a.below(b) else "within noise"


def mean_estimates(rows: list[dict[str, float]], seed: int = 0) -> dict[str, Estimate]:
    """Each per-example score's mean with its 95% bootstrap interval: ``{metric: Estimate}``.

    A metric is averaged over the rows that have it: an example whose reference lacks a field has no score for it.
    """
    names = list(dict.fromkeys(name for row in rows for name in row))
    return {name: Estimate.of_mean([row[name] for row in rows if name in row], seed=seed) for name in names}


def paired_difference(after: list[float], before: list[float], seed: int = 0) -> Estimate:
    """The mean of ``after - before`` example by example, with its 95% bootstrap interval (the pairs resampled
    together, so what both share, such as an example's difficulty, cancels out)."""
    if len(after) != len(before):
        raise ValueError(f"{len(after)} values after against {len(before)} before: pairs need one of each")
    return Estimate.of_mean([a - b for a, b in zip(after, before)], seed=seed)


def token_weighted_loss(losses: list[tuple[float, int]], n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """Token-weighted mean loss of ``(summed loss, tokens)`` per record, with its 95% bootstrap interval (records
    resampled, their tokens kept together)."""
    nll = np.array([n for n, _ in losses])
    tokens = np.array([c for _, c in losses], dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(losses), size=(n_resamples, len(losses)))
    means = nll[picks].sum(axis=1) / tokens[picks].sum(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return Estimate(float(nll.sum() / tokens.sum()), float(low), float(high))


def seeds_mean(scores: np.ndarray | list, n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """The mean of a (seeds x examples) table of per-example scores, with a 95% interval that holds both sources
    of noise: each resample draws the training seeds with replacement, then the examples with replacement.

    A bootstrap over the examples alone measures how well the test set pins down these trained models; a second
    seed trains another model, and how far the two disagree is noise of its own that more tickets never shrink.
    With one seed this is ``Estimate.of_mean`` of that row. For the difference of two variants example by example
    (and seed by seed, where both trained with the same seeds), pass the difference of their tables.
    """
    table = np.asarray(scores, dtype=float)
    if table.ndim != 2 or 0 in table.shape:
        raise ValueError(f"a seeds x examples table is needed, not shape {table.shape}")
    n_seeds, n_examples = table.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    examples = rng.integers(0, n_examples, size=(n_resamples, n_examples))
    # resample r: the mean over its drawn seeds of each drawn seed's mean over the drawn examples
    means = np.stack([table[seeds[:, s]][np.arange(n_resamples)[:, None], examples] for s in range(n_seeds)]).mean(
        axis=(0, 2)
    )
    low, high = np.quantile(means, [0.025, 0.975])
    return Estimate(float(table.mean()), float(low), float(high))


def examples_to_decide(difference: Estimate, examples: int, margin: float) -> int | None:
    """About how many examples would let ``difference``'s interval decide, if the same difference held: leave zero
    behind (a real difference), or fit wholly within ``+-margin`` (no difference that matters), whichever comes
    first. An interval's width shrinks as one over the square root of the examples. None: it decides already."""
    half = (difference.high - difference.low) / 2
    size = abs(difference.value)
    if (
        half <= 0
        or difference.low > 0
        or difference.high < 0
        or (difference.low >= -margin and difference.high <= margin)
    ):
        return None
    needed = []
    if size > 0:
        needed.append(examples * (half / size) ** 2)
    if size < margin:
        needed.append(examples * (half / (margin - size)) ** 2)
    if not needed:  # no difference measured and no margin to fit within: no size decides
        return None
    return int(np.ceil(round(min(needed), 6)))  # rounded first: 596.0000001 from float noise is 596
