"""Statistics for every measured claim: bootstrap intervals of a mean, paired differences and their verdicts.

One module, so that lesson 05's metrics, lesson 06's comparisons and lesson 07's forgetting and drift checks all
put intervals on their numbers the same way (a seeded percentile bootstrap over the examples).
"""

from __future__ import annotations

import numpy as np


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
