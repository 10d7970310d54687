"""Unigram token distributions of two corpora: KL both ways, JS divergence, and a KDE plot.

Both distributions live on the shared vocabulary V = the token types seen in either
corpus. Additive smoothing with pseudo-count `epsilon` per type keeps KL finite:
    P(w) = (count_P(w) + epsilon) / (N_P + epsilon * |V|)
The default epsilon = 0.5 is the Jeffreys-Perks ("expected likelihood") estimate. KL
depends on epsilon through the types only one corpus has; JS, computed on the same
smoothed distributions, barely does. All divergences are in bits (log base 2), so JS is
in [0, 1]: 0 for identical distributions, 1 for disjoint ones.
"""
from __future__ import annotations

import collections
from typing import Hashable, Sequence

import numpy as np

from synthflaw_jax.analysis import plots

DEFAULT_EPSILON = 0.5


def unigram_counts(token_lists: Sequence[Sequence[Hashable]]) -> collections.Counter:
    """Token type -> count over all documents."""
    counts = collections.Counter()
    for tokens in token_lists:
        counts.update(tokens)
    return counts


def shared_distributions(counts_p, counts_q, epsilon: float = DEFAULT_EPSILON):
    """(vocabulary, P, Q): smoothed probability vectors of both corpora over their shared vocabulary."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    vocab = sorted(set(counts_p) | set(counts_q), key=repr)
    cp = np.array([counts_p.get(w, 0) for w in vocab], dtype=np.float64)
    cq = np.array([counts_q.get(w, 0) for w in vocab], dtype=np.float64)
    p = (cp + epsilon) / (cp.sum() + epsilon * len(vocab))
    q = (cq + epsilon) / (cq.sum() + epsilon * len(vocab))
    return vocab, p, q


def kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in bits; terms with p = 0 contribute 0."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / q[nz])))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits, in [0, 1]."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = 0.5 * (p + q)
    return float(np.clip(0.5 * kl_bits(p, m) + 0.5 * kl_bits(q, m), 0.0, 1.0))


def divergence_metrics(tokens_p, tokens_q, epsilon: float = DEFAULT_EPSILON) -> dict:
    """KL(P||Q), KL(Q||P), JS and vocabulary sizes for corpus P (synthetic) vs Q (reference)."""
    counts_p, counts_q = unigram_counts(tokens_p), unigram_counts(tokens_q)
    vocab, p, q = shared_distributions(counts_p, counts_q, epsilon)
    return {
        "epsilon": epsilon,
        "shared_vocabulary": len(vocab),
        "types_synthetic": len(counts_p),
        "types_reference": len(counts_q),
        "types_only_synthetic": len(set(counts_p) - set(counts_q)),
        "types_only_reference": len(set(counts_q) - set(counts_p)),
        "kl_synthetic_reference_bits": kl_bits(p, q),
        "kl_reference_synthetic_bits": kl_bits(q, p),
        "js_divergence_bits": js_divergence(p, q),
    }


def log_frequencies(counts) -> np.ndarray:
    """log10 of each type's relative frequency (count / all tokens) in one corpus."""
    c = np.array(list(counts.values()), dtype=np.float64)
    return np.log10(c / c.sum())


def _draw_density(ax, values: np.ndarray, grid: np.ndarray, color: str, label: str) -> None:
    from scipy.stats import gaussian_kde

    if len(values) >= 2 and np.ptp(values) > 0:
        ax.plot(grid, gaussian_kde(values)(grid), color=color, label=f"{label} ({len(values)} types)")
    else:  # a KDE needs spread: every type equally frequent gives a single spike
        ax.axvline(values[0], color=color, label=f"{label} ({len(values)} types, all equal)")


def plot_frequency_kde(counts_synthetic, counts_reference, path, labels=("synthetic", "reference")) -> str:
    """KDE of log10 relative token-type frequencies of both corpora, saved as PNG at `path`."""
    a, b = log_frequencies(counts_synthetic), log_frequencies(counts_reference)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    pad = 0.1 * (hi - lo) + 0.1
    grid = np.linspace(lo - pad, hi + pad, 400)
    fig = plots.new_figure()
    ax = fig.add_subplot(1, 1, 1)
    _draw_density(ax, a, grid, plots.SYNTHETIC_COLOR, labels[0])
    _draw_density(ax, b, grid, plots.REFERENCE_COLOR, labels[1])
    ax.set_xlabel("log10 relative frequency of a token type")
    ax.set_ylabel("density over token types")
    ax.set_title("Token frequency distribution (KDE)")
    ax.legend()
    return plots.save_png(fig, path)
