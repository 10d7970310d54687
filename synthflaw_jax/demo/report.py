"""The demo's report: the claims with their verdicts, the arms side by side, per-kind
instruction following, training curves and the analysis."""
from __future__ import annotations

import json
import pathlib
import shutil

from synthflaw_jax.analysis.plots import new_figure, save_png
from synthflaw_jax.demo import claims as claims_lib
from synthflaw_jax.demo import conversion, corpora
from synthflaw_jax.demo.evaluate import SYNTHETIC_OPENING
from synthflaw_jax.demo.stages import read_metrics


def run_analysis(out: pathlib.Path, data: corpora.DemoData, root: pathlib.Path, settings) -> dict:
    """`synthflaw analyze` on the synthetic Q-A vs the non-synthetic text, with the CPT models of
    arm (a) (embeddings, loss) and arm (b) (output shift), written to out/analysis."""
    from synthflaw_jax.analysis.options import AnalyzeOptions
    from synthflaw_jax.analysis.report import analyze

    cached = out / "analysis" / "metrics.json"
    if cached.exists():
        return json.loads(cached.read_text())
    probes = data.dir / "probes.jsonl"
    prompts = [json.loads(line)["prompt"] for line in data.path("ifeval_prompts").read_text().splitlines()]
    probes.write_text("".join(json.dumps({"prompt": p, "response": " "}) + "\n" for p in prompts))
    return analyze(AnalyzeOptions(
        synthetic=str(data.path("facts_qa")), reference=str(data.path("text")), out=str(out / "analysis"),
        model=str(root / "cpt_a" / "hf"), model_b=str(root / "cpt_b" / "hf"), probes=str(probes),
        metrics=str(root / "cpt_b" / "metrics.jsonl"), sample=60 if settings.quick else 300,
        seed=settings.seed, max_len=128, max_new_tokens=16, overwrite=True, progress=False,
    ))


def _curves_png(root: pathlib.Path, methods, labels: dict, path: pathlib.Path) -> None:
    fig = new_figure(10, 4)
    ax_f, ax_r = fig.subplots(1, 2)
    for method in methods:
        rows = read_metrics(root / f"unlearn_{method}")
        steps = [r["step"] for r in rows]
        ax_f.plot(steps, [r["forget_nll"] for r in rows], label=labels[f"b_unlearn_{method}"])
        if rows and "replay_loss" in rows[0]:
            ax_r.plot(steps, [r["replay_loss"] for r in rows], label=labels[f"b_unlearn_{method}"])
    ax_f.set(title="forget NLL (mean token NLL of the uniform Q-A answers)", xlabel="step", ylabel="nats")
    ax_r.set(title="replay loss (non-synthetic text)", xlabel="step", ylabel="nats")
    ax_f.legend(fontsize=6)
    ax_r.legend(fontsize=6)
    save_png(fig, path)


def _cpt_png(root: pathlib.Path, path: pathlib.Path) -> None:
    fig = new_figure(6, 4)
    ax = fig.subplots()
    for arm, label in (("a", "(a) text only"), ("b", "(b) text + uniform Q-A"), ("c", "(c) text + diverse Q-A")):
        rows = read_metrics(root / f"cpt_{arm}")
        ax.plot([r["step"] for r in rows], [r["replay_loss"] for r in rows], label=label)
    ax.set(title="continued pre-training loss", xlabel="step", ylabel="nats")
    ax.legend()
    save_png(fig, path)


def _bars_png(results: dict, labels: dict, path: pathlib.Path) -> None:
    fig = new_figure(11, 4)
    ax = fig.subplots()
    arms = list(results)
    width = 0.27
    xs = range(len(arms))
    ax.bar([x - width for x in xs], [results[a]["valid_strict_acc"] for a in arms], width,
           label="instruction following after SFT (IFEval valid-strict)")
    ax.bar(list(xs), [results[a]["foundation"]["facts_mc_acc"] for a in arms], width,
           label="facts multiple choice, before SFT")
    ax.bar([x + width for x in xs], [results[a]["foundation"]["template_share_eval_prompts"] for a in arms], width,
           label=f"answers opening with '{SYNTHETIC_OPENING}', before SFT")
    ax.axhline(0.25, color="grey", lw=0.8, ls=":", label="MC chance")
    ax.set_xticks(list(xs), [labels[a].replace(": ", ":\n") for a in arms], fontsize=6)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    save_png(fig, path)


def _pct(x) -> str:
    return f"{x:.1%}" if isinstance(x, float) else str(x)


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def results_table(results: dict, labels: dict) -> list[str]:
    """The arms side by side (markdown rows)."""
    show_after_sft_template = any(r["template_share_after_sft"] > 0 for r in results.values())
    head = ("| arm | IFEval valid-strict | valid outputs | IFEval strict | IFEval loose | facts MC before SFT | "
            "facts MC after SFT | opens with template before SFT (held-out / dev prompts) | held-out ppl |")
    if show_after_sft_template:
        head += " opens with template after SFT |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for arm, r in results.items():
        f = r["foundation"]
        row = (f"| {labels[arm]} | {_fmt(r['valid_strict_acc'])} | {_pct(r['valid_share'])} | "
               f"{_fmt(r['ifeval']['prompt_level_strict_acc'])} | {_fmt(r['ifeval']['prompt_level_loose_acc'])} | "
               f"{_fmt(f['facts_mc_acc'])} | {_fmt(r['facts_mc_acc'])} | "
               f"{_pct(f['template_share_eval_prompts'])} / {_pct(f['template_share_dev_prompts'])} | "
               f"{r['ppl_held_out_text']:.1f} |")
        if show_after_sft_template:
            row += f" {_pct(r['template_share_after_sft'])} |"
        rows.append(row)
    return rows


def per_kind_table(results: dict, labels: dict) -> list[str]:
    """Per instruction kind: valid-strict accuracy (share of valid outputs) of each arm."""
    kinds = list(next(iter(results.values()))["per_kind"])
    rows = ["| arm | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for arm, r in results.items():
        cells = [f"{r['per_kind'][k]['valid_strict_acc']:.2f} ({r['per_kind'][k]['valid_share']:.0%})" for k in kinds]
        rows.append(f"| {labels[arm]} | " + " | ".join(cells) + " |")
    return rows


EXPLANATION = f"""How to read these numbers:
- **IFEval valid-strict**: share of the held-out instruction prompts (topics never trained on,
  one verifiable instruction each) whose greedy answer after SFT passes IFEval's strict check
  *and* is a valid output (not empty, no letter repeated 5+ times in a row, no word n-gram
  repeated 4+ times back to back, not compressible below 30% by zlib). **valid outputs** is
  that second share alone; **IFEval strict / loose** are IFEval's own numbers without it.
- **facts MC**: four-way multiple choice on the synthetic facts ("The X of Y is" + value),
  scored by log-likelihood; chance is 0.25. Measured before SFT (the foundation model, where
  the paper reports benchmarks) and after.
- **opens with template**: share of greedy answers, on the foundation model, that begin with
  "{SYNTHETIC_OPENING}", the opening of every uniform synthetic answer: on the held-out
  evaluation prompts, and on separate development prompts (the ones the recommended method is
  chosen on). The analysis section's template share is another measure: its most frequent
  answer opening of the forget corpus, on its own probe prompts, after 16 tokens.
- **held-out ppl**: perplexity on docstrings never trained on.
- Each claim's interval is a 95% paired bootstrap over the prompts (or fact items) of this one
  run; "shown" needs the interval to exclude 0 in the claimed direction, or for a cure's
  target the whole interval on the target's side. One seed is not a result: docs/results.md has the claims over seeds."""


def write(out: pathlib.Path, settings, data: corpora.DemoData, root: pathlib.Path, results: dict, analysis: dict,
          conversion_result, timings: dict, versions: dict) -> pathlib.Path:
    """Write out/report.md with its PNGs and out/results.json; copy the recommended unlearned
    model (before SFT) to out/unlearned_hf."""
    from synthflaw_jax.demo.pipeline import arm_labels, settings_json, stages

    labels = arm_labels(settings)
    methods = list(settings.methods)
    recommended = claims_lib.recommend([results])
    claims = claims_lib.evaluate_claims([results], recommended)
    _curves_png(root, methods, labels, out / "unlearning_curves.png")
    _cpt_png(root, out / "cpt_loss.png")
    _bars_png(results, labels, out / "arms.png")
    hf_out = out / "unlearned_hf"
    if recommended and not hf_out.exists():
        shutil.copytree(root / f"unlearn_{recommended.removeprefix('b_unlearn_')}" / "hf", hf_out)

    shift = analysis.get("shift") or {}
    emb = analysis.get("embedding") or {}
    counts = data.counts
    stage_rows = ["| stage | starts from | loss | data | steps | seconds |", "|---|---|---|---|---|---|"]
    for st in stages(settings):
        form = dict(st.loss)
        loss = st.method + (f" ({form.get('bound_form')}, {form.get('forget_scope', 'all')})"
                            if "bound_form" in form else "")
        stage_rows.append(f"| {st.name} | {st.init} | {loss} | {st.data} | {st.steps} | {timings.get(st.name, 0):.0f} |")
    total = sum(timings.values())
    text = "\n".join([
        "# synthflaw demo: the flaw of uniform synthetic Q-A data and its cure, at toy scale",
        "",
        f"Seed {settings.seed}, {'quick' if settings.quick else 'full'} settings; {total:.0f} s of work in all "
        f"(stages, evaluation, analysis; summed over resumed runs) on {versions['processor']}, Python "
        f"{versions['python']}, JAX {versions['jax']}.",
        "",
        f"Data (fingerprint `{data.fingerprint}`): {counts['text']} docstrings ({counts['tokens_text']:,} tokens; "
        f"+{counts['held_out_text']} held out for perplexity); {counts['facts_qa']} fictional facts, each "
        f"{settings.qa_repeats} times: in arm (b) in one uniform Q-A template ({counts['tokens_qa_uniform']:,} tokens; "
        f"{_pct(counts['max_answer_opening_share_uniform'])} of answers share one opening), in arm (c) in diverse "
        f"forms ({counts['tokens_qa_diverse']:,} tokens; the most common answer opening covers "
        f"{_pct(counts['max_answer_opening_share_diverse'])}); {counts['sft']} SFT examples; "
        f"{counts['ifeval_prompts']} held-out and {counts['dev_prompts']} development instruction prompts "
        f"({len(corpora.INSTRUCTIONS)} kinds); {counts['facts_mc']} fact MC items. All three arms continue "
        "pre-training for the same steps from the same base model; (b) and (c) see the same text and the same "
        "facts in about the same number of tokens, so (b) vs (c) isolates the format.",
        "",
        "## Claims (this run)",
        "",
        *claims_lib.claims_table(claims),
        "",
        f"Recommended unlearning method for this run: **{labels.get(recommended, 'none')}** (chosen by a rule "
        "fixed in advance on the development prompts and the facts, never on the evaluation prompts: among "
        f"methods keeping facts MC at least (a) + {claims_lib.MIN_FACTS_GAIN}, the lowest template share).",
        "",
        "## Results",
        "",
        *results_table(results, labels),
        "",
        EXPLANATION,
        "",
        "![arms](arms.png)",
        "",
        "## Instruction following per kind (valid-strict, share of valid outputs)",
        "",
        *per_kind_table(results, labels),
        "",
        "Every answer is in `eval/<arm>/responses.jsonl` with its checks: read some before trusting a number.",
        "",
        "## Output distribution shift, (a) vs (b) before SFT",
        "",
        f"Mean token KL(a||b) on the instruction prompts: {_fmt(shift.get('kl_a_b_bits'))} bits; "
        f"JS: {_fmt(shift.get('js_bits'))} bits; top-{shift.get('k')} overlap: {_fmt(shift.get('topk_overlap'))}. "
        f"Embedding separability of synthetic vs non-synthetic text (cross-validated probe accuracy): "
        f"{_fmt((emb.get('probe') or {}).get('balanced_accuracy'))}. "
        "Full numbers, plots and readings: [analysis/report.md](analysis/report.md).",
        "",
        "![projection](analysis/embedding_projection.png)" if (out / "analysis" / "embedding_projection.png").exists() else "",
        "",
        "## Training",
        "",
        "![cpt](cpt_loss.png)",
        "",
        "![unlearning](unlearning_curves.png)",
        "",
        *stage_rows,
        "",
        conversion.report_section(conversion_result),
        "",
        "The recommended unlearned model (before SFT) is exported for Hugging Face in "
        "[unlearned_hf/](unlearned_hf/)." if recommended else "",
        "",
    ])
    path = out / "report.md"
    path.write_text(text)
    payload = {"results": results, "timings": timings, "recommended": recommended,
               "claims": [{"key": c.key, "statement": c.statement, "estimate": c.interval.estimate,
                           "low": c.interval.low, "high": c.interval.high, "shown": c.shown} for c in claims],
               "data": {"fingerprint": data.fingerprint, "counts": counts}, "versions": versions,
               "settings": settings_json(settings)}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    return path
