"""Embeddings, projections, the linear probe and the kNN overlap score."""
import numpy as np
import pytest

from synthflaw_jax.analysis import embedding as E
from synthflaw_jax.errors import SynthflawError
from tests.test_analysis_fakes import FakeModel, make_tokenizer


def blobs(shift, n=100, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim))
    b = rng.normal(size=(n, dim)) + shift
    return a, b


def test_probe_separates_distant_blobs_and_is_at_chance_on_one_blob():
    a, b = blobs(shift=6.0)
    assert E.probe_accuracy(a, b, folds=5, seed=0)["balanced_accuracy"] >= 0.97
    rng = np.random.default_rng(1)
    one = rng.normal(size=(200, 8))
    order = rng.permutation(200)
    out = E.probe_accuracy(one[order[:100]], one[order[100:]], folds=5, seed=0)
    assert abs(out["balanced_accuracy"] - 0.5) <= 0.12
    assert out["folds"] == 5


def test_probe_needs_two_documents_per_corpus():
    with pytest.raises(SynthflawError, match="at least 2"):
        E.probe_accuracy(np.zeros((1, 3)), np.ones((5, 3)))


def test_knn_overlap_extremes():
    # cosine neighbours: two clouds around different directions never meet
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 4)) + [20, 0, 0, 0]
    b = rng.normal(size=(50, 4)) + [0, 20, 0, 0]
    assert E.knn_overlap(a, b, k=5)["overlap"] == 0.0
    # every point has an exact twin in the other corpus: its 1 nearest neighbour crosses over
    twins = np.random.default_rng(0).normal(size=(30, 4))
    out = E.knn_overlap(twins, twins.copy(), k=1)
    assert out["other_share_synthetic"] == 1.0 and out["other_share_reference"] == 1.0
    assert out["overlap"] == pytest.approx(59 / 60)


def test_knn_overlap_is_half_at_random_mixing_even_for_unequal_sizes():
    rng = np.random.default_rng(2)
    one = rng.normal(size=(800, 5))
    out = E.knn_overlap(one[:200], one[200:], k=10)
    assert out["overlap"] == pytest.approx(0.5, abs=0.06)
    # the unnormalised share of a small corpus's neighbours from the big one is ~0.75, not 0.5
    assert out["other_share_synthetic"] == pytest.approx(600 / 799, abs=0.06)


def test_knn_overlap_by_hand_on_the_unit_circle():
    def pts(degrees):
        r = np.radians(degrees)
        return np.stack([np.cos(r), np.sin(r)], axis=1)
    # k=1: A0<->A10 stay inside A; A100 -> B90, B90 -> A100, B180 -> A100 (80 deg vs 90 deg)
    out = E.knn_overlap(pts([0, 10, 100]), pts([90, 180]), k=1)
    assert out["other_share_synthetic"] == pytest.approx(1 / 3)
    assert out["other_share_reference"] == pytest.approx(1.0)
    assert out["overlap"] == pytest.approx(4 / 5 * (1 / 3 + 1) / 2)


def test_embed_documents_mean_pools_over_real_tokens_in_any_batching():
    tok = make_tokenizer()
    model = FakeModel(vocab_size=len(tok), tokenizer=tok)
    docs = ["the author", "the author in question is a writer who was born",
            "books", "love war return value if none", "the city of books about love", "true", "a list"]
    got = E.embed_documents(model, tok, docs, batch_size=3, max_len=6, progress=False)
    for i, doc in enumerate(docs):
        ids = tok([doc])["input_ids"][0][:6]
        hidden = model.hidden_states(np.array([ids]))[0]
        np.testing.assert_allclose(got[i], hidden.mean(axis=0), rtol=1e-5, atol=1e-6)
    one_by_one = E.embed_documents(model, tok, docs, batch_size=1, max_len=6, progress=False)
    np.testing.assert_allclose(got, one_by_one, rtol=1e-5, atol=1e-6)


def test_embed_documents_feeds_few_shapes():
    tok = make_tokenizer()
    model = FakeModel(vocab_size=len(tok), tokenizer=tok)
    docs = ["the " * n for n in range(1, 30)]
    E.embed_documents(model, tok, docs, batch_size=4, max_len=64, progress=False)
    assert all(b == 4 for b, _ in model.shapes)
    assert {t for _, t in model.shapes} <= {8, 16, 32}


def test_tokenizer_larger_than_model_vocab_is_an_error():
    tok = make_tokenizer()
    model = FakeModel(vocab_size=len(tok) - 1)
    with pytest.raises(SynthflawError, match="vocab_size"):
        E.embed_documents(model, tok, ["the author"], progress=False)
    with pytest.raises(SynthflawError, match="no tokenizer"):
        E.embed_documents(model, None, ["the author"], progress=False)


def test_tfidf_embeddings_are_unit_rows_in_one_space():
    a = ["the cat sat on the mat", "a cat and a dog", "cats like mats"]
    b = ["stocks fell on monday", "the market rose", "bond yields and stocks"]
    xa, xb = E.tfidf_embeddings(a, b, dim=4, seed=0)
    assert xa.shape == xb.shape == (3, 4)
    np.testing.assert_allclose(np.linalg.norm(np.vstack([xa, xb]), axis=1), 1.0, rtol=1e-6)
    xa2, _ = E.tfidf_embeddings(a, b, dim=4, seed=0)
    np.testing.assert_allclose(xa, xa2)


def test_projections_and_plot(tmp_path):
    assert E.tsne_perplexity(10) == pytest.approx(3.0)
    assert E.tsne_perplexity(1000) == 30.0
    assert E.tsne_perplexity(3) == 1.0
    a, b = blobs(shift=5.0, n=20, dim=60)
    assert E.pca_2d(np.vstack([a, b])).shape == (40, 2)
    out = E.plot_projections(a, b, tmp_path / "proj.png", seed=0)
    assert (tmp_path / "proj.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["tsne_perplexity"] == pytest.approx(13.0)
