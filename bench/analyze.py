"""Analysis benchmark: documents/s of the embedding step and of the pattern/distribution metrics.

    python bench/analyze.py [--docs 10000] [--repeats 3] [--no-model]

The corpus (N = --docs, default 10,000), shuffled with seed 0:
  40% TOFU full.json Q-A records (all 4000 at N = 10,000; document = question + "\\n" + answer)
  30% synthetic Q-A records, `sample_data.synthetic_qa_records(n, seed=0)`
  30% stdlib docstrings, `sample_data.stdlib_docstrings()` (509 on Python 3.11) cycled in a
      seeded random order until there are enough, so each appears ~6 times at N = 10,000
Documents are read like the CLI reads them (`corpus.record_to_document`), so the answer
view of a Q-A record is its answer and that of a docstring is the whole text.

Measured (documents/s = documents processed / wall seconds of the call):
  embed_model       `embedding.embed_documents` on the tiny random model
                    (`presets.tiny(vocab_size=len(tiny_tokenizer()))` + `loading.random_model`),
                    batch 16, max_len 256, tokenizing included. One timed pass over all N
                    documents after a warm-up that compiles every padded shape the pass
                    needs (the warm-up time is reported separately).
  embed_tfidf       `embedding.tfidf_embeddings(first half, second half)`: TF-IDF + SVD to 100
                    dims, fitted on all N documents (the fallback without --model)
  separability      `embedding.embedding_metrics` on those embeddings: 5-fold probe + kNN
                    overlap (the PCA/t-SNE plot is not timed: t-SNE at 10k points is minutes here)
  tokenize_words    `patterns.tokenize` of documents and answers (word tokens)
  pattern_metrics   `patterns.pattern_metrics` on the word tokens, with matched = half the
                    corpus's tokens/bytes/documents (so the *_matched path runs as in the CLI)
  distribution      `distribution.divergence_metrics` (KL both ways, JS) of the two halves
  tokenize_model    `patterns.tokenize` with the tiny tokenizer (`--tokens model` in the CLI)
Every step but embed_model runs --repeats times; the table gives the median and best run.
Writes bench/results/analyze.json. The machine is a shared 2-core VM: read the load average
recorded with the figures before comparing runs.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import random
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOFU = pathlib.Path("/work/shared/data/tofu/full.json")
BATCH_SIZE, MAX_LEN = 16, 256


def build_corpus(n: int, seed: int = 0):
    """(documents, composition): n Documents from TOFU, synthetic Q-A and stdlib docstrings, shuffled."""
    from synthflaw_jax.analysis.corpus import record_to_document
    from synthflaw_jax.data import sample_data

    n_tofu = min(round(0.4 * n), 4000)
    n_qa = round(0.3 * n)
    n_doc = n - n_tofu - n_qa
    tofu = [json.loads(line) for line in TOFU.read_text(encoding="utf-8").splitlines() if line.strip()]
    tofu = random.Random(seed).sample(tofu, n_tofu)
    qa = sample_data.synthetic_qa_records(n_qa, seed=seed)
    docstrings = sample_data.stdlib_docstrings()
    order = list(range(len(docstrings)))
    random.Random(seed).shuffle(order)
    texts = [docstrings[order[i % len(order)]] for i in range(n_doc)]
    records = tofu + qa + [{"text": t} for t in texts]
    random.Random(seed).shuffle(records)
    docs = [record_to_document(r, f"record {i}") for i, r in enumerate(records)]
    composition = {"tofu_full_json": n_tofu, "synthetic_qa_records": n_qa, "stdlib_docstrings": n_doc,
                   "distinct_stdlib_docstrings": len(docstrings), "seed": seed}
    return docs, composition


def timed(fn, repeats: int):
    """(last result, list of wall seconds) of `repeats` calls of fn()."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return result, seconds


def row(n_docs: int, seconds: list[float], **extra) -> dict:
    """A result row: seconds per run, and documents/s from the median and the best run."""
    return {"documents": n_docs, "seconds": seconds, "docs_per_s_median": n_docs / statistics.median(seconds),
            "docs_per_s_best": n_docs / min(seconds), **extra}


def bench_model_embedding(texts: list[str]) -> dict:
    """embed_documents on the tiny random model: warm-up (compiles each padded shape), then one timed pass."""
    import jax

    from synthflaw_jax.analysis import embedding, model_io
    from synthflaw_jax.data.tokenizer import tiny_tokenizer
    from synthflaw_jax.models import loading, presets

    tok = tiny_tokenizer()
    cfg = presets.tiny(vocab_size=len(tok))
    model = loading.random_model(cfg)
    n_params = sum(x.size for x in jax.tree.leaves(model.params))
    ids = model_io.encode(tok, texts, MAX_LEN)
    lengths = [min(len(x), MAX_LEN) for x in ids]
    # batches are length-sorted and padded to a power of two, so one full batch per width compiles them all
    by_width = {}
    for text, length in zip(texts, lengths):
        by_width.setdefault(model_io.bucket_length(length, MAX_LEN), text)
    start = time.perf_counter()
    for text in by_width.values():
        embedding.embed_documents(model, tok, [text] * BATCH_SIZE, BATCH_SIZE, MAX_LEN, progress=False)
    warmup = time.perf_counter() - start
    out, seconds = timed(lambda: embedding.embed_documents(model, tok, texts, BATCH_SIZE, MAX_LEN,
                                                           progress=False), 1)
    tokens = sum(lengths)
    return row(len(texts), seconds, warmup_seconds=warmup, compiled_widths=sorted(by_width),
               tokens=tokens, tokens_per_s=tokens / seconds[0], params=int(n_params), dim=int(out.shape[1]),
               batch_size=BATCH_SIZE, max_len=MAX_LEN)


def bench_tfidf(texts: list[str], repeats: int):
    """TF-IDF + SVD embeddings of both halves, and the probe + kNN on them."""
    from synthflaw_jax.analysis import embedding

    half = len(texts) // 2
    (xa, xb), seconds = timed(lambda: embedding.tfidf_embeddings(texts[:half], texts[half:]), repeats)
    tfidf = row(len(texts), seconds, dim=int(xa.shape[1]))
    metrics, seconds = timed(lambda: embedding.embedding_metrics(xa, xb), repeats)
    sep = row(len(texts), seconds, probe_balanced_accuracy=metrics["probe"]["balanced_accuracy"],
              knn_overlap=metrics["knn"]["overlap"])
    return tfidf, sep


def bench_patterns(docs, repeats: int) -> dict:
    """Word tokenization, pattern_metrics, divergence_metrics and tiny-tokenizer tokenization."""
    from synthflaw_jax.analysis import distribution, patterns
    from synthflaw_jax.data.tokenizer import tiny_tokenizer

    texts, answers = [d.text for d in docs], [d.answer for d in docs]
    n = len(texts)
    (doc_tokens, ans_tokens), seconds = timed(lambda: (patterns.tokenize(texts), patterns.tokenize(answers)),
                                              repeats)
    n_tokens = sum(map(len, doc_tokens))
    out = {"tokenize_words": row(n, seconds, tokens=n_tokens)}
    matched = {"tokens": n_tokens // 2, "bytes": patterns.corpus_bytes(texts) // 2, "documents": n // 2}
    _, seconds = timed(lambda: patterns.pattern_metrics(texts, doc_tokens, ans_tokens, matched=matched), repeats)
    out["pattern_metrics"] = row(n, seconds, matched=matched)
    half = n // 2
    _, seconds = timed(lambda: distribution.divergence_metrics(doc_tokens[:half], doc_tokens[half:]), repeats)
    out["distribution"] = row(n, seconds)
    tok = tiny_tokenizer()
    ids, seconds = timed(lambda: (patterns.tokenize(texts, tok), patterns.tokenize(answers, tok)), repeats)
    out["tokenize_model"] = row(n, seconds, tokens=sum(map(len, ids[0])))
    return out


def machine() -> dict:
    """CPU count and model, Python and library versions, load average now."""
    import jax
    import sklearn

    from synthflaw_jax.demo.progress import cpu_name

    return {"python": platform.python_version(), "jax": jax.__version__, "sklearn": sklearn.__version__,
            "cpus": os.cpu_count(), "cpu_model": cpu_name()}


def main(argv=None) -> int:
    """Run the measurements, print a table, write bench/results/analyze.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10000, help="documents in the corpus (default 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each cheap step (default 3)")
    parser.add_argument("--no-model", action="store_true", help="skip the tiny-model embedding")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    docs, composition = build_corpus(args.docs)
    texts = [d.text for d in docs]
    steps = {}
    if not args.no_model:
        print("embedding with the tiny model ...", flush=True)
        steps["embed_model"] = bench_model_embedding(texts)
    print("TF-IDF embedding and separability ...", flush=True)
    steps["embed_tfidf"], steps["separability"] = bench_tfidf(texts, args.repeats)
    print("pattern and distribution metrics ...", flush=True)
    steps.update(bench_patterns(docs, args.repeats))
    results = {"machine": machine(), "load_average_start": load_start, "load_average_end": os.getloadavg(),
               "corpus": composition, "documents": len(docs), "repeats": args.repeats, "steps": steps}

    out = ROOT / "bench" / "results" / "analyze.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{len(docs):,} documents {composition}; shared {results['machine']['cpus']}-core CPU, "
          f"load average {load_start[0]:.1f} at start, {results['load_average_end'][0]:.1f} at end")
    print("| step | docs/s (median) | docs/s (best) | seconds (median) | runs |")
    print("|---|---:|---:|---:|---:|")
    for name, r in steps.items():
        print(f"| {name} | {r['docs_per_s_median']:,.0f} | {r['docs_per_s_best']:,.0f} | "
              f"{statistics.median(r['seconds']):.2f} | {len(r['seconds'])} |")
    if "embed_model" in steps:
        m = steps["embed_model"]
        print(f"embed_model: warm-up {m['warmup_seconds']:.1f} s for widths {m['compiled_widths']}, "
              f"{m['tokens_per_s']:,.0f} tokens/s, {m['params']:,} params")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
