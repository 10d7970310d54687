"""report.md of the real-model experiment: one table, paired intervals, and what they show."""
from __future__ import annotations

from synthflaw_jax.real_experiment.run import paired_interval

COLUMNS = (("ifeval_prompt_strict", "IFEval prompt strict", "{:.3f}"),
           ("ifeval_inst_strict", "inst strict", "{:.3f}"),
           ("degenerate_share", "degenerate", "{:.2f}"),
           ("synthetic_opening_share", "synthetic opening", "{:.2f}"),
           ("wrapper_prob_held_out", "P(wrapper) held-out", "{:.3f}"),
           ("mean_response_words", "words", "{:.0f}"),
           ("fact_nll", "TOFU answer NLL", "{:.2f}"),
           ("ppl_held_out_text", "held-out ppl", "{:.1f}"))

COMPARISONS = (("a", "b", "uniform Q-A vs real text only (b - a)"),
               ("c", "b", "uniform vs diverse Q-A (b - c)"))


def _verdict(lo: float, hi: float) -> str:
    if lo > 0:
        return "shown (> 0)"
    if hi < 0:
        return "shown (< 0)"
    return "not shown (interval contains 0)"


def _paired_rows(results: dict, pairs: list, key: str, seed: int) -> list[str]:
    rows = []
    for x, y, label in pairs:
        if key not in results[x] or key not in results[y]:
            continue
        mean, lo, hi = paired_interval(results[x][key], results[y][key], seed=seed)
        rows.append(f"| {label} | {mean:+.3f} | [{lo:+.3f}, {hi:+.3f}] | {_verdict(lo, hi)} |")
    return rows


def render(doc: dict) -> str:
    """The markdown report of a results.json document."""
    s, results = doc["settings"], doc["results"]
    n = len(next(iter(results.values()))["ifeval_per_prompt_strict"])
    lines = [
        "# Real-model experiment",
        "",
        f"Model: `{s['model']}` ({doc['model_path']}). Seed {s['seed']}. One run: intervals are over "
        f"items only (the {n} IFEval prompts, or the held-out TOFU questions; paired bootstrap, 2000 "
        "resamples), not over seeds.",
        f"CPT: {s['cpt_steps']} steps, lr {s['cpt_lr']}, {s['text_rows']} real-text rows per step in every arm "
        f"+ {s['qa_rows']} synthetic rows in b and c, rows of {s['seq_len']} tokens, {s['n_facts']} TOFU records. "
        f"Unlearning on b: {s['unlearn_steps']} steps, lr {s['unlearn_lr']}, bound "
        + (f"{doc['bound']:.2f} nats (b's forget NLL + {s['bound_margin']})" if doc.get("bound") is not None
           else "not set yet (the run has not reached it)")
        + f". IFEval: {n} prompts, {s['max_new_tokens']} new tokens, greedy.",
        "",
        "| model | " + " | ".join(c[1] for c in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for key, m in results.items():
        cells = [fmt.format(m[col]) if m.get(col) is not None else "-" for col, _, fmt in COLUMNS]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences in IFEval prompt-level strict accuracy", "",
              "| comparison | difference | 95% interval | verdict |", "|---|---|---|---|"]
    pairs = [(x, y, label) for x, y, label in COMPARISONS if x in results and y in results]
    pairs += [("b", k, f"{k} vs b") for k in results if k.startswith("b_unlearn_")]
    lines += _paired_rows(results, pairs, "ifeval_per_prompt_strict", s["seed"])
    lines += ["", "## Paired differences in the probability of the wrapper (\"Answer:\" after \"Question: ...\")", "",
              "On held-out TOFU questions (authors never trained on), paired over questions.", "",
              "| comparison | difference | 95% interval | verdict |", "|---|---|---|---|"]
    lines += _paired_rows(results, pairs, "wrapper_prob_per_question", s["seed"])
    lines += ["", "## Paired differences in response length (words per IFEval response)", "",
              "| comparison | difference | 95% interval | verdict |", "|---|---|---|---|"]
    lines += _paired_rows(results, pairs, "response_words_per_prompt", s["seed"])
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in doc["timings"].items()), ""]
    return "\n".join(lines)
