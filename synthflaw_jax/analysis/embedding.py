"""Embedding-space comparison of two corpora: embeddings, 2-D projections, probe and kNN overlap.

Document embeddings come from a model (mean of the final hidden states over non-padding
tokens) or, without a model, from TF-IDF + truncated SVD (latent semantic analysis)
fitted on both corpora together. Separability is measured two ways:
- probe: cross-validated balanced accuracy of a logistic-regression classifier that
  tells the corpora apart (0.5 = chance, 1.0 = perfectly separable);
- kNN overlap: see `knn_overlap` (0.5 = perfectly mixed, 0 = fully separated).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from synthflaw_jax.analysis import model_io, plots
from synthflaw_jax.errors import SynthflawError

TSNE_PCA_DIMS = 50  # t-SNE runs on at most this many PCA components, as usually advised
PROBE_DIMS = 32  # the probe sees at most this many PCA components (see probe_accuracy)
SMALL_PROBLEM = 1000  # points; below this one thread is faster than several busy-waiting OpenMP/BLAS threads


def _threads_for(n_points: int):
    """One thread for small problems (seen: t-SNE of 120 points 5x slower with 2 OpenMP threads on a busy machine)."""
    import contextlib

    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1) if n_points < SMALL_PROBLEM else contextlib.nullcontext()


def embed_documents(model, tokenizer, docs: Sequence[str], batch_size: int = 16, max_len: int = 256,
                    progress: bool = True) -> np.ndarray:
    """Mean-pooled final hidden states [N, D] of `docs` (documents with no tokens get zeros)."""
    model_io.check_tokenizer(model, tokenizer)
    ids = model_io.encode(tokenizer, docs, max_len, int(model.config.vocab_size))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = None
    n_nonempty = sum(1 for x in ids if x)
    for batch in tqdm(model_io.batches(ids, batch_size, max_len, pad_id),
                      total=model_io.num_batches(n_nonempty, batch_size),
                      desc="embedding", unit="batch", disable=not progress):
        hidden = np.asarray(model.hidden_states(batch.input_ids, batch.attention_mask), dtype=np.float64)
        n = len(batch.index)
        mask = batch.attention_mask[:n, :, None].astype(np.float64)
        pooled = (hidden[:n] * mask).sum(axis=1) / mask.sum(axis=1)
        if out is None:
            out = np.zeros((len(docs), hidden.shape[-1]), dtype=np.float64)
        out[batch.index] = pooled
    if out is None:
        raise SynthflawError("no document produced any token; nothing to embed")
    return out.astype(np.float32)


def tfidf_embeddings(texts_a: Sequence[str], texts_b: Sequence[str], dim: int = 100, seed: int = 0):
    """(Xa, Xb): L2-normalised TF-IDF + TruncatedSVD embeddings fitted on both corpora together."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    texts = list(texts_a) + list(texts_b)
    vectorizer = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
    try:
        tfidf = vectorizer.fit_transform(texts)
    except ValueError:  # no word token anywhere
        raise SynthflawError("TF-IDF found no word tokens in either corpus") from None
    n_components = min(dim, tfidf.shape[1] - 1, len(texts) - 1)
    if n_components >= 2:
        with _threads_for(len(texts)):
            x = TruncatedSVD(n_components=n_components, random_state=seed).fit_transform(tfidf)
    else:  # too few terms or documents for an SVD: keep the TF-IDF vectors themselves
        x = tfidf.toarray()
    x = normalize(x)
    return x[: len(texts_a)], x[len(texts_a):]


def _at_least_2_columns(x: np.ndarray) -> np.ndarray:
    if x.shape[1] >= 2:
        return x
    return np.hstack([x, np.zeros((x.shape[0], 2 - x.shape[1]), dtype=x.dtype)])


def pca_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """First two principal components of the rows of x."""
    from sklearn.decomposition import PCA

    x = _at_least_2_columns(np.asarray(x, dtype=np.float64))
    with _threads_for(len(x)):
        return PCA(n_components=2, random_state=seed).fit_transform(x)


def tsne_perplexity(n: int, requested: float = 30.0) -> float:
    """`requested` capped at (n - 1) / 3 (and at least 1), so it stays below n as t-SNE needs."""
    return float(max(1.0, min(requested, (n - 1) / 3)))


def tsne_2d(x: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE of the rows of x (PCA to 50 dimensions first when wider), seeded."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = _at_least_2_columns(np.asarray(x, dtype=np.float64))
    tsne = TSNE(n_components=2, perplexity=tsne_perplexity(len(x), perplexity), init="pca", random_state=seed)
    with _threads_for(len(x)):
        if x.shape[1] > TSNE_PCA_DIMS and x.shape[0] > TSNE_PCA_DIMS:
            x = PCA(n_components=TSNE_PCA_DIMS, random_state=seed).fit_transform(x)
        return tsne.fit_transform(x)


def _labelled(xa: np.ndarray, xb: np.ndarray):
    xa, xb = np.asarray(xa, dtype=np.float64), np.asarray(xb, dtype=np.float64)
    if xa.ndim != 2 or xb.ndim != 2 or xa.shape[1] != xb.shape[1]:
        raise ValueError(f"embeddings must be [N, D] with the same D, got {xa.shape} and {xb.shape}")
    x = np.vstack([xa, xb])
    y = np.concatenate([np.zeros(len(xa), dtype=int), np.ones(len(xb), dtype=int)])
    return x, y


def probe_accuracy(xa: np.ndarray, xb: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """Stratified k-fold (shuffled with `seed`) balanced accuracy of a logistic-regression probe.

    The probe is PCA (at most PROBE_DIMS components, fitted on each training fold) ->
    standardisation -> logistic regression (L2, C = 1, balanced class weights). The PCA
    keeps the probe from memorising single documents when the embedding has about as many
    dimensions as there are documents (seen with TF-IDF + SVD). Balanced accuracy equals
    accuracy for equal-sized corpora and keeps chance at 0.5 when they differ. Folds are
    capped by the smaller corpus's size (at least 2 needed).
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _labelled(xa, xb)
    n_splits = min(folds, len(xa), len(xb))
    if n_splits < 2:
        raise SynthflawError("the probe needs at least 2 documents in each corpus")
    smallest_train = len(x) - -(-len(x) // n_splits)
    dims = max(1, min(PROBE_DIMS, x.shape[1], smallest_train - 1))
    probe = make_pipeline(PCA(n_components=dims, random_state=seed), StandardScaler(),
                          LogisticRegression(max_iter=2000, class_weight="balanced"))
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with _threads_for(len(x)):
        scores = cross_val_score(probe, x, y, cv=cv, scoring="balanced_accuracy")
    return {"balanced_accuracy": float(scores.mean()), "std": float(scores.std()), "folds": n_splits,
            "pca_dims": dims, "seed": seed}


def knn_overlap(xa: np.ndarray, xb: np.ndarray, k: int = 10) -> dict:
    """How mixed the two corpora are among nearest neighbours (cosine distance).

    For each point, s = the share of its k nearest neighbours (itself excluded) that come
    from the other corpus. With n points in all, the score is
        overlap = (n - 1) / n * (mean s over corpus A + mean s over corpus B) / 2.
    Averaging per corpus first removes the effect of unequal sizes: if the labels were
    random (perfect mixing) a point of A expects s = n_B / (n - 1), a point of B
    n_A / (n - 1), so the score's expectation is exactly 0.5 at any sizes. 0 means no
    neighbour ever crosses over (fully separated); values above 0.5 mean the corpora
    interleave more than chance. k is capped at n - 1.
    """
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import normalize

    x, y = _labelled(xa, xb)
    n = len(x)
    if len(xa) < 1 or len(xb) < 1 or n < 2:
        raise SynthflawError("kNN overlap needs at least one document in each corpus")
    k = max(1, min(k, n - 1))
    index = NearestNeighbors(n_neighbors=k).fit(normalize(x))
    neighbours = index.kneighbors(return_distance=False)  # X=None leaves each point out of its own list
    other = (y[neighbours] != y[:, None]).mean(axis=1)
    share_a, share_b = float(other[y == 0].mean()), float(other[y == 1].mean())
    return {"overlap": (n - 1) / n * (share_a + share_b) / 2, "k": k,
            "other_share_synthetic": share_a, "other_share_reference": share_b}


def plot_projections(xa: np.ndarray, xb: np.ndarray, path, seed: int = 0, perplexity: float = 30.0,
                     labels=("synthetic", "reference")) -> dict:
    """PCA and t-SNE scatter plots of both corpora side by side, saved as PNG; returns the settings used."""
    x, y = _labelled(xa, xb)
    pca = pca_2d(x, seed)
    tsne = tsne_2d(x, seed, perplexity)
    fig = plots.new_figure(12, 5.5)
    for col, (name, pts) in enumerate((("PCA", pca), ("t-SNE", tsne))):
        ax = fig.add_subplot(1, 2, col + 1)
        for cls, color, label in ((0, plots.SYNTHETIC_COLOR, labels[0]), (1, plots.REFERENCE_COLOR, labels[1])):
            sel = y == cls
            ax.scatter(pts[sel, 0], pts[sel, 1], s=8, alpha=0.6, color=color, label=f"{label} ({sel.sum()})")
        ax.set_title(f"{name} of document embeddings")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=8)
    plots.save_png(fig, path)
    return {"path": str(path), "tsne_perplexity": tsne_perplexity(len(x), perplexity), "seed": seed}


def embedding_metrics(xa: np.ndarray, xb: np.ndarray, *, folds: int = 5, k: int = 10, seed: int = 0) -> dict:
    """Probe balanced accuracy and kNN overlap of two corpora's embeddings."""
    return {"dim": int(np.asarray(xa).shape[1]), "probe": probe_accuracy(xa, xb, folds, seed),
            "knn": knn_overlap(xa, xb, k)}
