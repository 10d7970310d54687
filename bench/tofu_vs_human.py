"""Real-data check of `synthflaw analyze`: TOFU (GPT-4 written Q-A) against human-written prose.

    python bench/tofu_vs_human.py [--out /tmp/tofu_analysis] [--overwrite]

The reference corpus is built offline from human-written English prose that ships with
the interpreter and the installed packages (no download), one paragraph per document:
  pydoc       the Python Language Reference / Library Reference topics in `pydoc_data.topics`
  tfds        dataset descriptions of tensorflow_datasets: `datasets/*/README.md` and the
              `_DESCRIPTION = "..."` strings of the builder modules (read with `ast`, not imported)
  stdlib      docstrings of stdlib modules (`sample_data.stdlib_docstrings()`)
  numpy_scipy the summary paragraphs of numpy/scipy docstrings (before the first numpydoc
              section heading)
A paragraph is kept when it reads as prose: 15-200 words, >= 80% of them plain words, ending
with . ! or ?, no code/doctest/directive/heading/table/bullet lines. Markup is stripped,
whitespace collapsed, and near-duplicates dropped: only the first paragraph with a given
(first 4 words, last 4 words) is kept. That removes generated boilerplate such as the 131
scipy.stats "As an instance of the rv_continuous class, ..." paragraphs, which are one
docstring template filled in per distribution, not text a person wrote per document (the
same rule would drop 8 of TOFU's 4000 records). The sources and files are walked in a fixed
order, so the same installation gives the same file (its sha256 is printed).

It writes `<work>/reference.jsonl` ({"text", "source"} a line), then runs
    python -m synthflaw_jax analyze --synthetic /work/shared/data/tofu/full.json \
        --reference <work>/reference.jsonl --out <out>
(no --model: TF-IDF embeddings; the CLI's default sample of 2000 documents a side, seed 0),
and prints the headline numbers. A control then runs the same TF-IDF probe and kNN overlap
between two random halves of each sampled corpus (expected ~0.5 / ~0.5): a probe at 1.0 on
TOFU vs reference is only meaningful if same-corpus halves are not separable too. Last,
distinct-n and the zlib ratio of the answers alone (TOFU without its questions) at matched
size. Both go to `<work>/control.json`.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import inspect
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOFU = pathlib.Path("/work/shared/data/tofu/full.json")
MIN_WORDS, MAX_WORDS, MIN_WORDY = 15, 200, 0.8
NUMPY_SCIPY_MODULES = ("numpy", "numpy.linalg", "numpy.random", "numpy.fft", "numpy.polynomial",
                       "scipy.stats", "scipy.linalg", "scipy.optimize", "scipy.signal", "scipy.integrate",
                       "scipy.interpolate", "scipy.sparse", "scipy.spatial", "scipy.ndimage", "scipy.cluster")
NUMPYDOC_SECTIONS = re.compile(r"^\s*(Parameters|Returns|Yields|Raises|See Also|Notes|Examples|References|"
                               r"Attributes|Methods|Other Parameters|Warns|Warnings)\s*$")
WORD = re.compile(r"^[\"'(\[]*[A-Za-z][A-Za-z'\u2019-]*[\"')\].,;:!?]*$")
UNDERLINE = re.compile(r"^\s*[-=*~^#_+`]{3,}\s*$")
BAD_LINE_START = (">>>", "...", "$ ", "|", "+-", ".. ", "#", "```", "- ", "* ", "+ ", "::")


def _strip_markup(text: str) -> str:
    text = re.sub(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", text)  # :func:`name` -> name
    text = re.sub(r"`([^`]*?)\s*<[^>]*>`_+", r"\1", text)  # `text <url>`_ -> text
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](url) -> text
    text = re.sub(r"``?([^`]*)``?_*", r"\1", text)
    text = re.sub(r"\*\*?([^*]+)\*\*?", r"\1", text)
    return " ".join(text.split())


def prose_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of one document (blank-line separated), cleaned; see the module docstring."""
    out = []
    for block in re.split(r"\n\s*\n", textwrap.dedent(text)):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines or any(UNDERLINE.match(ln) or ln.strip().startswith(BAD_LINE_START) for ln in lines):
            continue
        para = _strip_markup(" ".join(ln.strip() for ln in lines))
        words = para.split()
        if not MIN_WORDS <= len(words) <= MAX_WORDS or para[-1] not in ".!?":
            continue
        if sum(bool(WORD.match(w)) for w in words) / len(words) < MIN_WORDY:
            continue
        out.append(para)
    return out


def signature(para: str) -> tuple:
    """(first 4 words, last 4 words), lower-cased: equal for copies of one boilerplate paragraph."""
    words = para.lower().split()
    return tuple(words[:4]), tuple(words[-4:])


def _pydoc_texts() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def _tfds_texts() -> list[str]:
    import importlib.util

    base = pathlib.Path(importlib.util.find_spec("tensorflow_datasets").origin).parent
    texts = [p.read_text(encoding="utf-8") for p in sorted(base.glob("datasets/*/README.md"))]
    for path in sorted(base.rglob("*.py")):
        src = path.read_text(encoding="utf-8", errors="replace")
        if "_DESCRIPTION = " not in src or path.name.endswith("_test.py"):
            continue
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in tree.body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_DESCRIPTION"
                                                     for t in node.targets)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                texts.append(node.value.value)
    return texts


def _stdlib_texts() -> list[str]:
    from synthflaw_jax.data.sample_data import stdlib_docstrings

    return stdlib_docstrings()


def _numpy_scipy_texts() -> list[str]:
    texts, seen = [], set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in NUMPY_SCIPY_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            for attr in sorted(getattr(module, "__all__", None) or dir(module)):
                if attr.startswith("_"):
                    continue
                obj = getattr(module, attr, None)
                if obj is None or not (callable(obj) or inspect.ismodule(obj)):
                    continue
                doc = getattr(obj, "__doc__", None)
                if not isinstance(doc, str) or doc in seen:
                    continue
                seen.add(doc)
                lines = inspect.cleandoc(doc).splitlines()
                cut = next((i for i, ln in enumerate(lines) if NUMPYDOC_SECTIONS.match(ln)), len(lines))
                texts.append("\n".join(lines[:cut]))
    return texts


SOURCES = (("pydoc", _pydoc_texts), ("tfds", _tfds_texts), ("stdlib", _stdlib_texts),
           ("numpy_scipy", _numpy_scipy_texts))


def build_reference(path: pathlib.Path) -> dict:
    """Write the human-written reference corpus to `path` (JSONL); returns per-source counts and sha256."""
    seen, records, counts = set(), [], {}
    for source, texts in SOURCES:
        n = 0
        for text in texts():
            for para in prose_paragraphs(text):
                if signature(para) not in seen:
                    seen.add(signature(para))
                    records.append({"text": para, "source": source})
                    n += 1
        counts[source] = n
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    path.write_bytes(data)
    words = [len(r["text"].split()) for r in records]
    return {"path": str(path), "documents": len(records), "per_source": counts,
            "mean_words": sum(words) / len(words), "sha256": hashlib.sha256(data).hexdigest()}


def control(syn_texts, ref_texts, seed: int) -> dict:
    """TF-IDF probe/kNN between two random halves of each corpus: what 'not separable' looks like here."""
    import numpy as np

    from synthflaw_jax.analysis import embedding

    out = {}
    for name, texts in (("synthetic_halves", syn_texts), ("reference_halves", ref_texts)):
        order = np.random.default_rng(seed).permutation(len(texts))
        half = len(texts) // 2
        a, b = [texts[i] for i in order[:half]], [texts[i] for i in order[half:2 * half]]
        xa, xb = embedding.tfidf_embeddings(a, b, seed=seed)
        m = embedding.embedding_metrics(xa, xb, seed=seed)
        out[name] = {"probe_balanced_accuracy": m["probe"]["balanced_accuracy"], "knn_overlap": m["knn"]["overlap"]}
    return out


def answers_only(syn_answers, ref_answers, seed: int) -> dict:
    """distinct-n and zlib ratio of the answers alone at matched size: TOFU without its templated questions."""
    from synthflaw_jax.analysis import patterns

    ta, tr = patterns.tokenize(syn_answers), patterns.tokenize(ref_answers)
    budget = min(sum(map(len, ta)), sum(map(len, tr)))
    nbytes = min(patterns.corpus_bytes(syn_answers), patterns.corpus_bytes(ref_answers))
    ca, cr = patterns.truncate_to_budget(ta, budget, seed), patterns.truncate_to_budget(tr, budget, seed)
    return {"tokens": budget, "bytes": nbytes,
            "distinct_n": {str(n): [patterns.distinct_n(ca, n), patterns.distinct_n(cr, n)] for n in range(1, 5)},
            "compression_ratio": [patterns.compression_ratio(syn_answers, nbytes, seed),
                                  patterns.compression_ratio(ref_answers, nbytes, seed)]}


def main(argv=None) -> int:
    """Build the reference, run `synthflaw analyze`, print the headline numbers and the control."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/tofu_vs_human", help="where reference.jsonl goes")
    parser.add_argument("--out", default="/tmp/tofu_analysis", help="the analysis folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--sample", type=int, default=2000, help="documents a side (the CLI default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-control", action="store_true", help="skip the same-corpus halves control")
    args = parser.parse_args(argv)

    ref = pathlib.Path(args.work) / "reference.jsonl"
    info = build_reference(ref)
    print(f"reference: {info['documents']} paragraphs {info['per_source']}, mean {info['mean_words']:.1f} words, "
          f"sha256 {info['sha256'][:16]}")
    cmd = [sys.executable, "-m", "synthflaw_jax", "analyze", "--synthetic", str(TOFU), "--reference", str(ref),
           "--out", args.out, "--sample", str(args.sample), "--seed", str(args.seed)]
    if args.overwrite:
        cmd.append("--overwrite")
    print("$", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    if rc:
        return rc
    m = json.loads((pathlib.Path(args.out) / "metrics.json").read_text())
    p, e, d = m["patterns"], m["embedding"], m["distribution"]
    for side in ("synthetic", "reference"):
        s = p[side]
        ent = [x["entropy_bits"] for x in s["position_entropy_matched"] if x["entropy_bits"] is not None]
        top = {k: (v[0]["template"], round(v[0]["share"], 3)) if v else None for k, v in s["templates"].items()}
        print(f"{side}: docs {s['documents']} distinct-n(matched) "
              f"{ {k: round(v, 3) for k, v in s['distinct_n_matched'].items()} } "
              f"zlib(matched) {s['compression_ratio_matched']:.3f} "
              f"entropy(matched, mean of {len(ent)}) {sum(ent) / len(ent):.2f} top templates {top}")
    print(f"embedding: probe {e['probe']['balanced_accuracy']:.3f} kNN overlap {e['knn']['overlap']:.3f}; "
          f"JS {d['js_divergence_bits']:.3f} bits")
    if not args.no_control:
        from synthflaw_jax.analysis import corpus

        syn = corpus.load_corpus(TOFU, args.sample, args.seed)
        ref_corpus = corpus.load_corpus(ref, args.sample, args.seed)
        ctrl = control(syn.texts(), ref_corpus.texts(), args.seed)
        print("control (random halves of one corpus):", json.dumps(ctrl))
        ans = answers_only(syn.answers(), ref_corpus.answers(), args.seed)
        print("answers only, matched [synthetic, reference]:", json.dumps(ans))
        (pathlib.Path(args.work) / "control.json").write_text(
            json.dumps({"reference": info, "control": ctrl, "answers_only": ans}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
