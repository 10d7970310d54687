"""report.md from the metrics of `synthflaw analyze`: tables, plots and a plain reading per section.

Every reading is computed from the numbers; the thresholds that turn a number into a
word ("easily separable", ...) are named constants here.
"""
from __future__ import annotations

SEPARABLE_EASY, SEPARABLE_PARTLY = 0.9, 0.7  # probe balanced accuracy
MIXED_LITTLE, MIXED_SOME = 0.15, 0.35  # kNN overlap (0.5 = random mixing)
JS_SMALL, JS_LARGE = 0.05, 0.2  # unigram JS divergence, bits
SHIFT_SMALL = 0.01  # output JS divergence, bits


def fmt(x, digits: int = 3) -> str:
    """A number for the report ("n/a" for None)."""
    if x is None:
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}f}"


def pct(x) -> str:
    """A share in [0, 1] as a percentage ("n/a" for None)."""
    return "n/a" if x is None else f"{100 * x:.1f}%"


def quote(template: str | None) -> str:
    """A template in double quotes, with backticks escaped so Markdown shows them as text."""
    return "none" if template is None else '"' + template.replace("`", "\\`") + '"'


def _top(templates: list[dict]):
    return (templates[0]["template"], templates[0]["share"]) if templates else (None, 0.0)


def mean_entropy(entries: list[dict]) -> float | None:
    """Mean entropy over the positions that have one."""
    values = [e["entropy_bits"] for e in entries if e["entropy_bits"] is not None]
    return sum(values) / len(values) if values else None


def read_patterns(p: dict) -> str:
    """One paragraph on pattern simplification (at matched sizes), with a vote of the indicators."""
    s, r, size = p["synthetic"], p["reference"], p["matched"]
    votes, parts = [], []
    d2s, d2r = s["distinct_n_matched"].get("2"), r["distinct_n_matched"].get("2")
    if d2s is not None and d2r is not None:
        parts.append(f"At an equal budget of {size['tokens']:,} tokens the synthetic corpus has "
                     f"{'fewer' if d2s < d2r else 'more'} distinct bigrams than the reference "
                     f"(distinct-2 {d2s:.2f} vs {d2r:.2f}).")
        votes.append(d2s < d2r)
    cs, cr = s["compression_ratio_matched"], r["compression_ratio_matched"]
    parts.append(f"On {size['bytes']:,} bytes of each it is {'more' if cs < cr else 'less'} compressible "
                 f"(zlib ratio {cs:.2f} vs {cr:.2f}; lower means more repetition).")
    votes.append(cs < cr)
    for view, noun in (("document_opening", "documents"), ("answer_opening", "answers")):
        ts, ss = _top(s["templates"][view])
        tr, sr = _top(r["templates"][view])
        if ts is not None:
            ref_part = (f"the reference's most common one, {quote(tr)}, starts {pct(sr)}" if tr
                        else "the reference has none")
            parts.append(f"Its most common {view.replace('_', ' ')}, {quote(ts)}, starts {pct(ss)} of {noun}; "
                         f"{ref_part}.")
            votes.append(ss > sr)
    es, er = mean_entropy(s["position_entropy_matched"]), mean_entropy(r["position_entropy_matched"])
    if es is not None and er is not None:
        n = len(s["position_entropy_matched"])
        parts.append(f"Over {size['documents']:,} answers of each, the first {n} tokens are "
                     f"{'more' if es < er else 'less'} predictable across documents (mean entropy {es:.2f} vs "
                     f"{er:.2f} bits per position).")
        votes.append(es < er)
    k, m = sum(votes), len(votes)
    verdict = ("consistent with pattern simplification" if k > m / 2
               else "no clear sign of pattern simplification")
    parts.append(f"{k} of {m} indicators say the synthetic corpus is more uniform than the reference: {verdict}.")
    return " ".join(parts)


def read_distribution(d: dict, p: dict) -> str:
    """One paragraph on the unigram distributions."""
    js = d["js_divergence_bits"]
    size = "little" if js < JS_SMALL else "moderately" if js < JS_LARGE else "strongly"
    a, b = d["kl_synthetic_reference_bits"], d["kl_reference_synthetic_bits"]
    text = (f"The unigram token distributions differ {size}: JS divergence {js:.3f} bits (0 = identical, "
            f"1 = disjoint). KL(synthetic||reference) = {a:.2f} bits and KL(reference||synthetic) = {b:.2f} bits; ")
    if b > a:
        text += ("the reverse direction is larger: the reference spends more of its probability on tokens the "
                 "synthetic corpus rarely uses than the other way round.")
    else:
        text += ("the forward direction is larger: the synthetic corpus spends more of its probability on tokens "
                 "the reference rarely uses than the other way round.")
    ts, tr = p["synthetic"].get("ttr_matched"), p["reference"].get("ttr_matched")
    if ts is not None and tr is not None:
        text += (f" At the matched budget the type/token ratio is {ts:.3f} vs {tr:.3f} "
                 f"({'lower' if ts < tr else 'higher'} lexical variety in the synthetic corpus).")
    return text


def read_embedding(e: dict) -> str:
    """One paragraph on separability in embedding space."""
    acc, ov = e["probe"]["balanced_accuracy"], e["knn"]["overlap"]
    sep = ("easily separable" if acc >= SEPARABLE_EASY else "partly separable" if acc >= SEPARABLE_PARTLY
           else "hard to tell apart")
    mix = ("few neighbourhoods mix" if ov < MIXED_LITTLE else "they mix somewhat" if ov < MIXED_SOME
           else "they are well mixed")
    return (f"A linear probe tells the two corpora apart with balanced accuracy {acc:.3f} "
            f"({e['probe']['folds']}-fold cross-validation; 0.5 = chance): they are {sep}. Among each document's "
            f"{e['knn']['k']} nearest neighbours the kNN overlap is {ov:.3f} (0.5 = as mixed as random labels, "
            f"0 = never a neighbour from the other corpus): {mix}. Embeddings: {e['method']}.")


def read_loss(loss: dict) -> str:
    """One paragraph on the model's loss per corpus."""
    s = loss["synthetic"]["mean_token_loss_nats"]
    r = loss["reference"]["mean_token_loss_nats"]
    if s < r:
        return (f"The model's mean token loss is lower on the synthetic corpus ({s:.3f} vs {r:.3f} nats/token): "
                "it finds the synthetic text easier to predict, consistent with pattern simplification.")
    return (f"The model's mean token loss is not lower on the synthetic corpus ({s:.3f} vs {r:.3f} nats/token): "
            "no sign here that the synthetic text is easier for it.")


def read_training(t: dict) -> str:
    """One paragraph on a run's loss curves."""
    parts = []
    for stream, c in t["streams"].items():
        if not c.get("points"):
            continue
        drop = c["relative_drop"]
        half = f", halfway down by step {c['half_drop_step']:,}" if c["half_drop_step"] is not None else ""
        parts.append(f"\"{stream}\" went from {c['first']:.3f} to {c['last']:.3f} "
                     f"({pct(drop)} drop{half})")
    ranked = [(c["relative_drop"], s) for s, c in t["streams"].items()
              if s != "total" and c.get("relative_drop") is not None]
    text = "Over the run, " + "; ".join(parts) + "."
    if len(ranked) >= 2:
        text += f" The \"{max(ranked)[1]}\" stream's loss fell the most in relative terms."
    return text


def read_shift(sh: dict) -> str:
    """One paragraph on the output distribution shift from model A to model B."""
    js = sh["js_bits"]
    size = "barely" if js < SHIFT_SMALL else "clearly"
    text = (f"On {sh['prompts']} probe prompts ({sh['positions']:,} token positions) model B's next-token "
            f"distributions {size} differ from model A's: mean KL(A||B) = {sh['kl_a_b_bits']:.4f} bits, "
            f"KL(B||A) = {sh['kl_b_a_bits']:.4f} bits, JS = {js:.4f} bits; on average "
            f"{pct(sh['topk_overlap'])} of the top-{sh['k']} tokens agree.")
    a, b = sh.get("template_share_a"), sh.get("template_share_b")
    if a and b and a["share"] is not None and b["share"] is not None:
        move = ("B leans further toward the synthetic pattern" if b["share"] > a["share"]
                else "B leans less toward the synthetic pattern" if b["share"] < a["share"]
                else "no change in how often the pattern appears")
        text += (f" Greedy outputs starting with the synthetic template {quote(a['template'])}: A {pct(a['share'])}, "
                 f"B {pct(b['share'])}: {move}.")
    return text


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _inputs(m: dict) -> str:
    i = m["inputs"]
    rows = [[name, f"`{c['path']}`", fmt(c["documents"]), fmt(c["total_documents"]),
             fmt(m["patterns"][name]["tokens"])] for name, c in (("synthetic", i["synthetic"]),
                                                                  ("reference", i["reference"]))]
    sample = (f"Each corpus was sampled to at most {i['sample']:,} documents (uniform, without replacement, "
              f"numpy seed {i['seed']})." if i["sample"] else "No sampling: every document was used.")
    tokens = ("word tokens (lower-cased words and punctuation marks)" if i["tokens"] == "words"
              else "the model tokenizer's tokens")
    return "\n\n".join([_table(["corpus", "file", "documents used", "documents in file", "tokens"], rows),
                        f"{sample} Token statistics use {tokens}; templates are the first/last "
                        f"{i['template_k']} tokens."])


def _patterns(m: dict) -> str:
    p = m["patterns"]
    s, r = p["synthetic"], p["reference"]
    rows = []
    for n in s["distinct_n"]:
        rows.append([f"distinct-{n} (whole corpus)", fmt(s["distinct_n"][n]), fmt(r["distinct_n"][n])])
    for n in s["distinct_n_matched"]:
        rows.append([f"distinct-{n} (matched: {p['matched']['tokens']:,} tokens)",
                     fmt(s["distinct_n_matched"][n]), fmt(r["distinct_n_matched"][n])])
    rows.append(["zlib compression ratio, level 9 (whole corpus)", fmt(s["compression_ratio"]),
                 fmt(r["compression_ratio"])])
    rows.append([f"zlib compression ratio (matched: {p['matched']['bytes']:,} bytes)",
                 fmt(s["compression_ratio_matched"]), fmt(r["compression_ratio_matched"])])
    rows.append(["mean per-document type/token ratio", fmt(s["mean_document_ttr"]), fmt(r["mean_document_ttr"])])
    for view in ("document_opening", "document_closing", "answer_opening", "answer_closing"):
        (ts, ss), (tr, sr) = _top(s["templates"][view]), _top(r["templates"][view])
        rows.append([f"top {view.replace('_', ' ')} (share)", f"{quote(ts)} ({pct(ss)})" if ts else "none",
                     f"{quote(tr)} ({pct(sr)})" if tr else "none"])
    rows.append([f"mean entropy of the first {len(s['position_entropy_matched'])} answer tokens, bits "
                 f"(matched: {p['matched']['documents']:,} answers)",
                 fmt(mean_entropy(s["position_entropy_matched"])), fmt(mean_entropy(r["position_entropy_matched"]))])
    top_rows = []
    for i in range(5):
        cells = []
        for c in (s, r):
            t = c["templates"]["answer_opening"]
            cells.append(f"{quote(t[i]['template'])} ({pct(t[i]['share'])})" if i < len(t) else "")
        top_rows.append([str(i + 1)] + cells)
    return "\n\n".join([read_patterns(p), _table(["metric", "synthetic", "reference"], rows),
                        "Most common answer openings:",
                        _table(["rank", "synthetic", "reference"], top_rows),
                        f"![entropy of the first answer tokens by position]({p['plot']})"])


def _distribution(m: dict) -> str:
    d, p = m["distribution"], m["patterns"]
    rows = [["KL(synthetic || reference), bits", fmt(d["kl_synthetic_reference_bits"])],
            ["KL(reference || synthetic), bits", fmt(d["kl_reference_synthetic_bits"])],
            ["JS divergence, bits (0..1)", fmt(d["js_divergence_bits"])],
            ["type/token ratio, synthetic / reference (matched budget)",
             f"{fmt(p['synthetic'].get('ttr_matched'))} / {fmt(p['reference'].get('ttr_matched'))}"],
            ["token types, synthetic / reference / shared vocabulary",
             f"{d['types_synthetic']:,} / {d['types_reference']:,} / {d['shared_vocabulary']:,}"],
            ["additive smoothing pseudo-count per type", fmt(d["epsilon"])]]
    return "\n\n".join([read_distribution(d, p), _table(["metric", "value"], rows),
                        f"The KDE is drawn from {d['plot_tokens_per_corpus']:,} tokens of each corpus, so "
                        "the peaks of rare types (seen once, twice, ...) sit at the same place for both.",
                        f"![KDE of log token frequencies]({d['plot']})"])


def _embedding(m: dict) -> str:
    e = m["embedding"]
    rows = [["embeddings", e["method"]], ["dimensions", fmt(e["dim"])],
            ["probe balanced accuracy (mean ± std over folds)",
             f"{fmt(e['probe']['balanced_accuracy'])} ± {fmt(e['probe']['std'])} ({e['probe']['folds']} folds, "
             f"PCA to {e['probe']['pca_dims']} dims, "
             f"seed {e['probe']['seed']})"],
            [f"kNN overlap (k = {e['knn']['k']}, cosine)", fmt(e["knn"]["overlap"])],
            ["t-SNE perplexity", fmt(e["tsne_perplexity"], 1)]]
    return "\n\n".join([read_embedding(e), _table(["metric", "value"], rows),
                        f"![PCA and t-SNE of document embeddings]({e['plot']})"])


def _loss(m: dict) -> str:
    loss = m["loss"]
    rows = [[name, fmt(loss[name]["mean_token_loss_nats"]), fmt(loss[name]["mean_document_loss_nats"]),
             fmt(loss[name]["tokens"])] for name in ("synthetic", "reference")]
    return "\n\n".join([read_loss(loss), _table(["corpus", "mean token loss (nats)",
                                                 "mean document loss (nats)", "tokens scored"], rows)])


def _training(m: dict) -> str:
    t = m["training"]
    rows = [[s, fmt(c.get("first")), fmt(c.get("last")), pct(c.get("relative_drop")),
             fmt(c.get("half_drop_step"))] for s, c in t["streams"].items()]
    return "\n\n".join([read_training(t), _table(["stream", "first", "last", "drop", "halfway at step"], rows),
                        f"![loss curves]({t['plot']})"])


def _shift(m: dict) -> str:
    sh = m["shift"]
    rows = [["probe prompts (source)", f"{sh['prompts']} ({sh['probe_source']})"],
            ["mean KL(A || B), bits", fmt(sh["kl_a_b_bits"], 4)], ["mean KL(B || A), bits", fmt(sh["kl_b_a_bits"], 4)],
            ["mean JS, bits", fmt(sh["js_bits"], 4)], [f"top-{sh['k']} overlap", fmt(sh["topk_overlap"])]]
    for key, name in (("template_share_a", "A"), ("template_share_b", "B")):
        if sh.get(key):
            rows.append([f"model {name}: greedy outputs starting with {quote(sh[key]['template'])}",
                         pct(sh[key]["share"])])
    return "\n\n".join([read_shift(sh), _table(["metric", "value"], rows)])


def render_report(m: dict) -> str:
    """The whole report.md for the metrics of one `synthflaw analyze` run."""
    i = m["inputs"]
    sections = ["# Synthetic vs reference corpus", "## Inputs\n\n" + _inputs(m),
                "## Pattern simplification\n\n" + _patterns(m),
                "## Token distribution\n\n" + _distribution(m),
                "## Embedding space\n\n" + _embedding(m)]
    if m.get("loss"):
        sections.append(f"## Model loss per corpus (`{i['model']}`)\n\n" + _loss(m))
    if m.get("training"):
        sections.append(f"## Training loss curves (`{i['metrics_file']}`)\n\n" + _training(m))
    if m.get("shift"):
        sections.append(f"## Output distribution shift (A = `{i['model']}`, B = `{i['model_b']}`)\n\n" + _shift(m))
    return "\n\n".join(sections) + "\n"
