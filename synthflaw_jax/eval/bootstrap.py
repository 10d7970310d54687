"""Paired bootstrap intervals over seeds and items (prompts, questions).

Each seed contributes a table of per-item values, one column per quantity (e.g. arm (c)'s
and arm (b)'s 0/1 score on the same prompt). A resample draws seeds with replacement and,
inside each drawn seed, that seed's items with replacement (the same rows for every
column, so differences stay paired); the quantities' means, averaged over the drawn
seeds, go through `statistic`. With one seed this is the ordinary paired bootstrap over
items; with many it also carries the seed-to-seed spread.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float = 0.95

    def excludes_zero(self) -> bool:
        """The interval lies entirely above or entirely below 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        if not np.isfinite(self.estimate):
            return "undefined"
        return f"{self.estimate:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _column_means(tables: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean([t.mean(axis=0) for t in tables], axis=0)


def hierarchical_bootstrap(tables: Sequence[np.ndarray], statistic: Callable[[np.ndarray], float],
                           n_resamples: int = 4000, level: float = 0.95, seed: int = 0) -> Interval:
    """`statistic(column means)` and its interval; `tables[s]` is seed s's [items, quantities]
    array (seeds may have different item counts)."""
    tables = [np.asarray(t, np.float64).reshape(len(t), -1) for t in tables]
    if not tables or any(len(t) == 0 for t in tables):
        raise ValueError("every seed needs at least one item")
    rng = np.random.default_rng(seed)
    n_seeds = len(tables)
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        drawn = rng.integers(0, n_seeds, n_seeds) if n_seeds > 1 else np.zeros(1, int)
        means = []
        for s in drawn:
            t = tables[s]
            means.append(t[rng.integers(0, len(t), len(t))].mean(axis=0))
        stats[b] = statistic(np.mean(means, axis=0))
    alpha = (1 - level) / 2
    finite = stats[np.isfinite(stats)]
    low, high = np.quantile(finite, [alpha, 1 - alpha]) if len(finite) else (np.nan, np.nan)
    return Interval(float(statistic(_column_means(tables))), float(low), float(high), level)


def paired_difference(x: Sequence[Sequence[float]], y: Sequence[Sequence[float]], **kwargs) -> Interval:
    """Mean of x - y with its interval; x[s] and y[s] are seed s's per-item values, paired."""
    tables = [np.stack([np.asarray(a, float), np.asarray(b, float)], axis=1) for a, b in zip(x, y)]
    return hierarchical_bootstrap(tables, lambda m: m[0] - m[1], **kwargs)


def recovered_fraction(cure: Sequence[Sequence[float]], flawed: Sequence[Sequence[float]],
                       reference: Sequence[Sequence[float]], **kwargs) -> Interval:
    """(cure - flawed) / (reference - flawed): the share of the reference's lead that a cure
    wins back (NaN where the resampled lead is 0)."""
    tables = [np.stack([np.asarray(c, float), np.asarray(f, float), np.asarray(r, float)], axis=1)
              for c, f, r in zip(cure, flawed, reference)]

    def fraction(m):
        gap = m[2] - m[1]
        return (m[0] - m[1]) / gap if gap != 0 else np.nan

    return hierarchical_bootstrap(tables, fraction, **kwargs)
