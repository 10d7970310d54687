"""Unigram distributions, KL and JS against scipy, and the KDE plot."""
import collections

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from synthflaw_jax.analysis import distribution as D

PNG = b"\x89PNG\r\n\x1a\n"


def test_smoothed_distributions_by_hand():
    p_counts = collections.Counter({"a": 3, "b": 1})
    q_counts = collections.Counter({"b": 2, "c": 2})
    vocab, p, q = D.shared_distributions(p_counts, q_counts, epsilon=0.5)
    assert vocab == ["a", "b", "c"]
    np.testing.assert_allclose(p, np.array([3.5, 1.5, 0.5]) / 5.5)
    np.testing.assert_allclose(q, np.array([0.5, 2.5, 2.5]) / 5.5)


def test_kl_and_js_against_scipy():
    tokens_p = [["a", "a", "a", "b"], ["c"]]
    tokens_q = [["b", "b"], ["c", "d", "d"]]
    out = D.divergence_metrics(tokens_p, tokens_q, epsilon=0.5)
    _, p, q = D.shared_distributions(D.unigram_counts(tokens_p), D.unigram_counts(tokens_q), 0.5)
    assert out["kl_synthetic_reference_bits"] == pytest.approx(entropy(p, q, base=2))
    assert out["kl_reference_synthetic_bits"] == pytest.approx(entropy(q, p, base=2))
    assert out["js_divergence_bits"] == pytest.approx(jensenshannon(p, q, base=2) ** 2)
    assert out["shared_vocabulary"] == 4
    assert (out["types_only_synthetic"], out["types_only_reference"]) == (1, 1)


def test_identical_corpora_have_zero_divergence_and_disjoint_ones_js_one():
    tokens = [["x", "y", "y", "z"]]
    out = D.divergence_metrics(tokens, tokens)
    assert out["kl_synthetic_reference_bits"] == pytest.approx(0.0, abs=1e-12)
    assert out["js_divergence_bits"] == pytest.approx(0.0, abs=1e-12)
    assert D.js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        D.shared_distributions(collections.Counter("a"), collections.Counter("b"), epsilon=0)


def test_kde_plot_writes_png_even_when_all_frequencies_are_equal(tmp_path):
    a = collections.Counter({"a": 10, "b": 3, "c": 1, "d": 1})
    b = collections.Counter({"x": 1, "y": 1})  # one value only: no KDE possible, drawn as a line
    path = D.plot_frequency_kde(a, b, tmp_path / "kde.png")
    assert (tmp_path / "kde.png").read_bytes()[:8] == PNG
    assert path == str(tmp_path / "kde.png")
    np.testing.assert_allclose(D.log_frequencies(a), np.log10([10 / 15, 3 / 15, 1 / 15, 1 / 15]))
