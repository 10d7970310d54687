"""Pattern simplification metrics: distinct-n, k-gram templates, compression, position entropy, TTR.

Tokens are lower-cased word tokens (runs of word characters, keeping in-word apostrophes
as in "author's", and each punctuation mark on its own) unless a Hugging Face tokenizer is
given, in which case they are the model's token ids. All metrics count n-grams inside
documents, never across a document boundary.
"""
from __future__ import annotations

import collections
import math
import re
import zlib
from typing import Hashable, Sequence

import numpy as np

WORD_RE = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")

Tokens = Sequence[Hashable]


def word_tokens(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of `text`."""
    return WORD_RE.findall(text.lower())


def tokenize(texts: Sequence[str], tokenizer=None) -> list[list]:
    """Token lists of `texts`: word tokens, or the tokenizer's ids (no special tokens) when given."""
    if tokenizer is None:
        return [word_tokens(t) for t in texts]
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def ngrams(tokens: Tokens, n: int):
    """The n-grams of one token list, as tuples."""
    return zip(*(tokens[i:] for i in range(n)))


def distinct_n(token_lists: Sequence[Tokens], n: int) -> float | None:
    """Unique n-grams / total n-grams over the corpus; None when no document has n tokens."""
    seen, total = set(), 0
    for tokens in token_lists:
        for gram in ngrams(tokens, n):
            seen.add(gram)
            total += 1
    return len(seen) / total if total else None


def truncate_to_budget(token_lists: Sequence[Tokens], budget: int, seed: int) -> list[Tokens]:
    """Whole documents in a seeded random order until `budget` tokens; the last one cut to fit.

    distinct-n and TTR fall as a corpus grows, so two corpora are compared at the same
    number of tokens (the smaller corpus's size) for a fair reading.
    """
    order = np.random.default_rng(seed).permutation(len(token_lists))
    out, used = [], 0
    for i in order:
        if used >= budget:
            break
        tokens = list(token_lists[i])[: budget - used]
        out.append(tokens)
        used += len(tokens)
    return out


def type_token_ratio(token_lists: Sequence[Tokens]) -> float | None:
    """Distinct token types / tokens over the whole corpus (equals distinct-1); None if no tokens."""
    return distinct_n(token_lists, 1)


def mean_document_ttr(token_lists: Sequence[Tokens]) -> float | None:
    """Mean over non-empty documents of each document's own type/token ratio."""
    ratios = [len(set(t)) / len(t) for t in token_lists if len(t)]
    return float(np.mean(ratios)) if ratios else None


def templates(token_lists: Sequence[Tokens], k: int, where: str = "start", top: int = 10) -> list[dict]:
    """The `top` most frequent first (`where="start"`) or last (`"end"`) k-token templates.

    Each entry: `tokens` (tuple), `count` and `share` = count / all documents. Documents
    shorter than k tokens have no template but still count in the denominator.
    """
    if where not in ("start", "end"):
        raise ValueError(f"where must be 'start' or 'end', got {where!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    counts = collections.Counter()
    for tokens in token_lists:
        if len(tokens) >= k:
            gram = tokens[:k] if where == "start" else tokens[len(tokens) - k:]
            counts[tuple(gram)] += 1
    n_docs = len(token_lists)
    # ties broken by the template itself so the order never depends on the corpus order
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0])))[:top]
    return [{"tokens": gram, "count": c, "share": c / n_docs} for gram, c in ranked]


def template_text(tokens: Sequence, tokenizer=None) -> str:
    """A template as a readable string: words joined by spaces, or the tokenizer's decoding."""
    if tokenizer is None:
        return " ".join(str(t) for t in tokens)
    return tokenizer.decode(list(tokens))


def compression_ratio(texts: Sequence[str], max_bytes: int | None = None, seed: int = 0) -> float:
    """zlib (level 9) compressed bytes / raw UTF-8 bytes of the documents joined by newlines.

    With `max_bytes`, only the first `max_bytes` bytes of the documents joined in a seeded
    random order are compressed: zlib finds more repeats in more text, so two corpora are
    compared at the same number of bytes.
    """
    if max_bytes is not None:
        order = np.random.default_rng(seed).permutation(len(texts))
        texts = [texts[i] for i in order]
    raw = "\n".join(texts).encode("utf-8")
    if max_bytes is not None:
        raw = raw[:max_bytes]
    if not raw:
        raise ValueError("compression ratio of an empty corpus")
    return len(zlib.compress(raw, 9)) / len(raw)


def entropy_bits(counts) -> float:
    """Shannon entropy in bits of a distribution given by counts."""
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts if c)


def position_entropy(token_lists: Sequence[Tokens], positions: int) -> list[dict]:
    """Per position i < `positions`: entropy (bits) of the token at i over documents that reach i.

    Each entry: `position`, `entropy_bits` (None where no document is that long) and
    `documents` (how many documents have a token at that position).
    """
    out = []
    for i in range(positions):
        counts = collections.Counter(t[i] for t in token_lists if len(t) > i)
        n = sum(counts.values())
        out.append({
            "position": i,
            "entropy_bits": entropy_bits(counts.values()) if n else None,
            "documents": n,
        })
    return out


def starts_with_template(text: str, template: str) -> bool:
    """Whether `text` begins with `template`, compared as word tokens (case and spacing ignored)."""
    want = word_tokens(template)
    return bool(want) and word_tokens(text)[: len(want)] == want


# ------------------------------------------------------------- recurring phrases (scope)

SENTENCE_END = frozenset(".!?")
PLACES = ("opening", "last_sentence", "closing")  # where in an answer a recurring phrase sits
MIN_PHRASE_WORDS = 2  # a lone word or mark ("the", ".") is not a pattern


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """The tokens of `word_tokens(text)` with their character spans: (lower-cased token, start, end)."""
    return [(m.group().lower(), m.start(), m.end()) for m in WORD_RE.finditer(text)]


def last_sentence_start(text: str, spans: Sequence[tuple[str, int, int]]) -> int | None:
    """Index in `spans` of the first token of the last sentence, or None for one sentence.

    A sentence ends at ".", "!" or "?" followed by whitespace (so "3.14" does not end one).
    """
    for i in range(len(spans) - 1, 0, -1):
        word, _, end = spans[i - 1]
        if word in SENTENCE_END and end < len(text) and text[end].isspace():
            return i
    return None


def place_words(text: str, spans: Sequence[tuple[str, int, int]] | None = None) -> dict[str, list[str] | None]:
    """The word sequence read from each place of one answer: `opening` (from the start),
    `last_sentence` (from the start of its last sentence; None for one sentence) and
    `closing` (from the end backwards, i.e. reversed, within the last sentence)."""
    spans = word_spans(text) if spans is None else spans
    words = [w for w, _, _ in spans]
    last = last_sentence_start(text, spans)
    tail = words if last is None else words[last:]
    return {"opening": words, "last_sentence": None if last is None else tail, "closing": tail[::-1]}


def _is_phrase(gram: Sequence[str]) -> bool:
    return len(gram) >= MIN_PHRASE_WORDS and any(WORD_RE.match(w) and w[0].isalnum() for w in gram)


def recurring_prefixes(sequences: Sequence[Sequence[str] | None], n_documents: int, min_share: float,
                       max_words: int = 8) -> list[dict]:
    """Prefixes (word n-grams, n <= `max_words`) shared by at least `min_share` of
    `n_documents` documents (and by at least 2), each document taken to its longest shared
    prefix: the recurring phrases with which documents begin.

    `sequences` holds each document's words read from one place (None: not there). Returns
    one entry per distinct longest prefix that has at least MIN_PHRASE_WORDS tokens and a
    word among them: `words` (tuple), `documents` (how many documents begin with it) and
    `share` (documents / n_documents), most frequent first.
    """
    need = max(2, math.ceil(min_share * n_documents - 1e-9))
    counts = collections.Counter()
    for seq in sequences:
        if seq:
            for n in range(1, min(len(seq), max_words) + 1):
                counts[tuple(seq[:n])] += 1
    longest = set()
    for seq in sequences:
        best = None
        for n in range(1, min(len(seq or ()), max_words) + 1):
            gram = tuple(seq[:n])
            if counts[gram] < need:
                break
            best = gram
        if best is not None and _is_phrase(best):
            longest.add(best)
    ranked = sorted(longest, key=lambda g: (-counts[g], g))
    return [{"words": g, "documents": counts[g], "share": counts[g] / max(n_documents, 1)} for g in ranked]


def recurring_phrases(texts: Sequence[str], min_share: float, max_words: int = 8) -> dict[str, list[dict]]:
    """{place: `recurring_prefixes` entries} over answers `texts` for every place in PLACES;
    `words` are always in reading order (closing phrases are found backwards, then turned)."""
    places = [place_words(t) for t in texts]
    out = {}
    for place in PLACES:
        found = recurring_prefixes([p[place] for p in places], len(texts), min_share, max_words)
        if place == "closing":
            found = [{**e, "words": e["words"][::-1]} for e in found]
        out[place] = found
    return out


def corpus_bytes(texts: Sequence[str]) -> int:
    """UTF-8 bytes of the documents joined by newlines."""
    return len("\n".join(texts).encode("utf-8"))


def pattern_metrics(
    documents: Sequence[str],
    doc_tokens: Sequence[Tokens],
    ans_tokens: Sequence[Tokens],
    *,
    tokenizer=None,
    max_n: int = 4,
    template_k: int = 3,
    top: int = 10,
    entropy_positions: int = 8,
    matched: dict | None = None,
    seed: int = 0,
) -> dict:
    """All pattern metrics of one corpus, from its texts and their token lists (see `tokenize`).

    Diversity and compression use the whole documents; templates come from both the
    document and the answer view; position entropy from the answers. `matched` =
    {"tokens": T, "bytes": B, "documents": D} adds `*_matched` metrics computed on a seeded
    subset of that size (distinct-n and TTR on T tokens, compression on B bytes, position
    entropy on D answers), so that two corpora of different sizes compare fairly.
    `tokenizer` only decodes templates made of token ids.
    """
    out = {
        "documents": len(documents),
        "tokens": sum(len(t) for t in doc_tokens),
        "bytes": corpus_bytes(documents),
        "distinct_n": {str(n): distinct_n(doc_tokens, n) for n in range(1, max_n + 1)},
        "type_token_ratio": type_token_ratio(doc_tokens),
        "mean_document_ttr": mean_document_ttr(doc_tokens),
        "compression_ratio": compression_ratio(documents),
        "position_entropy": position_entropy(ans_tokens, entropy_positions),
        "templates": {},
    }
    for view, lists in (("document", doc_tokens), ("answer", ans_tokens)):
        for where, name in (("start", "opening"), ("end", "closing")):
            entries = templates(lists, template_k, where, top)
            out["templates"][f"{view}_{name}"] = [
                {"template": template_text(e["tokens"], tokenizer), "count": e["count"], "share": e["share"]}
                for e in entries
            ]
    if matched is not None:
        cut = truncate_to_budget(doc_tokens, matched["tokens"], seed)
        out["matched"] = dict(matched)
        out["distinct_n_matched"] = {str(n): distinct_n(cut, n) for n in range(1, max_n + 1)}
        out["ttr_matched"] = type_token_ratio(cut)
        out["compression_ratio_matched"] = compression_ratio(documents, matched["bytes"], seed)
        keep = np.random.default_rng(seed).permutation(len(ans_tokens))[: matched["documents"]]
        out["position_entropy_matched"] = position_entropy([ans_tokens[i] for i in keep], entropy_positions)
    return out


def plot_position_entropy(entropy_a: list[dict], entropy_b: list[dict], path,
                          labels=("synthetic", "reference")) -> str:
    """Entropy (bits) of the answer token at each position for both corpora, saved as PNG."""
    from synthflaw_jax.analysis import plots

    fig = plots.new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for entries, color, label in ((entropy_a, plots.SYNTHETIC_COLOR, labels[0]),
                                  (entropy_b, plots.REFERENCE_COLOR, labels[1])):
        xs = [e["position"] + 1 for e in entries if e["entropy_bits"] is not None]
        ys = [e["entropy_bits"] for e in entries if e["entropy_bits"] is not None]
        ax.plot(xs, ys, marker="o", color=color, label=label)
    n_docs = max([e["documents"] for e in entropy_a + entropy_b] or [1])
    if n_docs > 1:
        ax.axhline(np.log2(n_docs), color="gray", linestyle="--", linewidth=1,
                   label=f"maximum: log2({n_docs:,} documents)")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("answer token position")
    ax.set_ylabel("entropy across documents (bits)")
    ax.set_title("How predictable is each opening token of an answer?")
    ax.legend()
    return plots.save_png(fig, path)
