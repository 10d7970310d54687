"""`synthflaw analyze`: every analysis of a synthetic vs a reference corpus, written to one folder.

The folder gets `metrics.json`, the PNG plots and `report.md`. It is built in a temporary
sibling folder and renamed into place at the end, so a failed run never leaves a half
report behind; an existing non-empty folder is refused unless `overwrite` is set.
"""
from __future__ import annotations

import json
import logging
import math
import pathlib

from synthflaw_jax import outputs
from synthflaw_jax.analysis import corpus as corpus_lib
from synthflaw_jax.analysis import distribution, embedding, loss_curves, model_io, patterns, render, shift
from synthflaw_jax.analysis.options import AnalyzeOptions
from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)

KDE_PNG = "token_frequency_kde.png"
ENTROPY_PNG = "position_entropy.png"
PROJECTION_PNG = "embedding_projection.png"
LOSS_PNG = "loss_curves.png"


def _load_model(path: str):
    """The model at `path` through the project's loader (imported here: JAX loads only when needed)."""
    from synthflaw_jax import load

    return load(path)


def _inputs(opts: AnalyzeOptions) -> list:
    return [opts.synthetic, opts.reference, opts.model, opts.model_b, opts.probes, opts.metrics]


def _check_options(opts: AnalyzeOptions) -> None:
    if opts.tokens not in ("words", "model"):
        raise SynthflawError(f"--tokens must be 'words' or 'model', got {opts.tokens!r}")
    if opts.tokens == "model" and not opts.model:
        raise SynthflawError("--tokens model needs --model")
    if opts.model_b and not opts.model:
        raise SynthflawError("--model-b needs --model (the shift is measured from --model to --model-b)")
    for name in ("template_k", "max_n", "entropy_positions", "knn_k", "top_k", "probe_count", "batch_size",
                 "max_len", "max_new_tokens"):
        if getattr(opts, name) < 1:
            raise SynthflawError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(opts, name)}")
    if opts.folds < 2:
        raise SynthflawError(f"--folds must be >= 2, got {opts.folds}")


def _finite(obj):
    """A copy of obj with every NaN/inf float replaced by None, so metrics.json stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _pattern_section(syn, ref, tokenizer, opts: AnalyzeOptions, work: pathlib.Path):
    tok_syn = (patterns.tokenize(syn.texts(), tokenizer), patterns.tokenize(syn.answers(), tokenizer))
    tok_ref = (patterns.tokenize(ref.texts(), tokenizer), patterns.tokenize(ref.answers(), tokenizer))
    matched = {"tokens": min(sum(map(len, tok_syn[0])), sum(map(len, tok_ref[0]))),
               "bytes": min(patterns.corpus_bytes(syn.texts()), patterns.corpus_bytes(ref.texts())),
               "documents": min(len(syn.documents), len(ref.documents))}
    if matched["tokens"] == 0:
        raise SynthflawError("one corpus has no tokens at all; nothing to compare")
    kwargs = dict(tokenizer=tokenizer, max_n=opts.max_n, template_k=opts.template_k,
                  entropy_positions=opts.entropy_positions, matched=matched, seed=opts.seed)
    section = {
        "synthetic": patterns.pattern_metrics(syn.texts(), *tok_syn, **kwargs),
        "reference": patterns.pattern_metrics(ref.texts(), *tok_ref, **kwargs),
        "matched": matched,
    }
    top = section["synthetic"]["templates"]["answer_opening"]
    section["dominant_template"] = top[0]["template"] if top else None
    patterns.plot_position_entropy(section["synthetic"]["position_entropy_matched"],
                                   section["reference"]["position_entropy_matched"], work / ENTROPY_PNG)
    section["plot"] = ENTROPY_PNG
    dist = distribution.divergence_metrics(tok_syn[0], tok_ref[0])
    # at equal token counts the rare-type peaks (1/N, 2/N, ...) of both corpora line up
    cut_syn, cut_ref = (patterns.truncate_to_budget(t[0], matched["tokens"], opts.seed) for t in (tok_syn, tok_ref))
    distribution.plot_frequency_kde(distribution.unigram_counts(cut_syn), distribution.unigram_counts(cut_ref),
                                    work / KDE_PNG)
    dist["plot"] = KDE_PNG
    dist["plot_tokens_per_corpus"] = matched["tokens"]
    return section, dist


def _embedding_section(syn, ref, model, opts: AnalyzeOptions, work: pathlib.Path) -> dict:
    if model is not None:
        kw = dict(batch_size=opts.batch_size, max_len=opts.max_len, progress=opts.progress)
        xa = embedding.embed_documents(model, model.tokenizer, syn.texts(), **kw)
        xb = embedding.embed_documents(model, model.tokenizer, ref.texts(), **kw)
        method = "model: mean of final hidden states over non-padding tokens"
    else:
        xa, xb = embedding.tfidf_embeddings(syn.texts(), ref.texts(), seed=opts.seed)
        method = "TF-IDF + truncated SVD (no model given), fitted on both corpora together"
    section = embedding.embedding_metrics(xa, xb, folds=opts.folds, k=opts.knn_k, seed=opts.seed)
    section["method"] = method
    plot = embedding.plot_projections(xa, xb, work / PROJECTION_PNG, seed=opts.seed)
    section["tsne_perplexity"] = plot["tsne_perplexity"]
    section["plot"] = PROJECTION_PNG
    return section


def _probe_prompts(ref, opts: AnalyzeOptions) -> tuple[list[str], str]:
    if opts.probes:
        probes = corpus_lib.load_corpus(opts.probes, sample=opts.probe_count, seed=opts.seed)
        return probes.prompts(), opts.probes
    idx = corpus_lib.sample_indices(len(ref.documents), opts.probe_count, opts.seed)
    prompts = ref.prompts()
    return [prompts[i] for i in idx], "reference corpus (prompt view)"


def compute(opts: AnalyzeOptions, work: pathlib.Path) -> dict:
    """Run every analysis the options allow, writing plots into `work`; returns the metrics."""
    syn = corpus_lib.load_corpus(opts.synthetic, opts.sample, opts.seed)
    ref = corpus_lib.load_corpus(opts.reference, opts.sample, opts.seed)
    for name, c in (("synthetic", syn), ("reference", ref)):
        if len(c.documents) < 2:
            raise SynthflawError(f"{c.path}: the {name} corpus has {len(c.documents)} document; at least 2 needed")
    model = model_b = None
    if opts.model:
        log.info("loading model %s", opts.model)
        model = _load_model(opts.model)
        model_io.check_tokenizer(model, model.tokenizer, f"--model {opts.model}")
    if opts.model_b:
        log.info("loading model %s", opts.model_b)
        model_b = _load_model(opts.model_b)
    tokenizer = model.tokenizer if opts.tokens == "model" else None

    metrics = {"inputs": {
        "synthetic": syn.summary(), "reference": ref.summary(), "sample": opts.sample, "seed": opts.seed,
        "tokens": opts.tokens, "template_k": opts.template_k, "model": opts.model, "model_b": opts.model_b,
        "metrics_file": opts.metrics,
    }}
    log.info("pattern and token statistics")
    metrics["patterns"], metrics["distribution"] = _pattern_section(syn, ref, tokenizer, opts, work)
    log.info("embeddings")
    metrics["embedding"] = _embedding_section(syn, ref, model, opts, work)
    metrics["loss"] = None
    if model is not None:
        kw = dict(batch_size=opts.batch_size, max_len=opts.max_len, progress=opts.progress)
        metrics["loss"] = {
            "synthetic": loss_curves.corpus_loss(model, model.tokenizer, syn.texts(), desc="scoring synthetic", **kw),
            "reference": loss_curves.corpus_loss(model, model.tokenizer, ref.texts(), desc="scoring reference", **kw),
        }
    metrics["training"] = None
    if opts.metrics:
        curves = loss_curves.read_metrics(opts.metrics)
        loss_curves.plot_loss_curves(curves, work / LOSS_PNG)
        metrics["training"] = {"streams": {s: loss_curves.curve_summary(*c) for s, c in sorted(curves.items())},
                               "plot": LOSS_PNG}
    metrics["shift"] = None
    if model_b is not None:
        prompts, source = _probe_prompts(ref, opts)
        metrics["shift"] = shift.compare_models(
            model, model_b, model.tokenizer, prompts, template=metrics["patterns"]["dominant_template"],
            k=opts.top_k, batch_size=opts.batch_size, max_len=opts.max_len,
            max_new_tokens=opts.max_new_tokens, progress=opts.progress)
        metrics["shift"]["probe_source"] = source
    return _finite(metrics)


def analyze(opts: AnalyzeOptions) -> dict:
    """Compute all analyses and write metrics.json, the plots and report.md into `opts.out` atomically."""
    outputs.check(opts.out, opts.overwrite, inputs=_inputs(opts), what="--out")
    _check_options(opts)
    with outputs.directory(opts.out, opts.overwrite, inputs=_inputs(opts), what="--out") as work:
        metrics = compute(opts, work)
        (work / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        (work / "report.md").write_text(render.render_report(metrics), encoding="utf-8")
    return metrics
