"""The demo's report: the arms side by side, training curves, the analysis plots."""
from __future__ import annotations

import json
import pathlib
import shutil

from synthflaw_jax.analysis.plots import new_figure, save_png
from synthflaw_jax.demo import conversion, corpora
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


def _curves_png(root: pathlib.Path, bound: float, path: pathlib.Path) -> None:
    fig = new_figure(10, 4)
    ax_f, ax_r = fig.subplots(1, 2)
    for name, label in (("unlearn_lb", "lower-bounded"), ("unlearn_ga", "GA"), ("unlearn_npo", "NPO")):
        rows = read_metrics(root / name)
        steps = [r["step"] for r in rows]
        ax_f.plot(steps, [r["forget_nll"] for r in rows], label=label)
        if rows and "replay_loss" in rows[0]:
            ax_r.plot(steps, [r["replay_loss"] for r in rows], label=label)
    ax_f.axhline(bound, color="grey", linestyle="--", label=f"bound lambda = {bound}")
    ax_f.set(title="forget NLL (mean token NLL of the synthetic answers)", xlabel="step", ylabel="nats")
    ax_r.set(title="replay loss (non-synthetic text)", xlabel="step", ylabel="nats")
    ax_f.legend()
    ax_r.legend()
    save_png(fig, path)


def _cpt_png(root: pathlib.Path, path: pathlib.Path) -> None:
    fig = new_figure(6, 4)
    ax = fig.subplots()
    for name, label in (("cpt_a", "(a) text only"), ("cpt_b", "(b) text + synthetic Q-A")):
        rows = read_metrics(root / name)
        ax.plot([r["step"] for r in rows], [r["replay_loss"] for r in rows], label=label)
    ax.set(title="continued pre-training loss", xlabel="step", ylabel="nats")
    ax.legend()
    save_png(fig, path)


def _bars_png(results: dict, labels: dict, path: pathlib.Path) -> None:
    fig = new_figure(9, 4)
    ax = fig.subplots()
    arms = list(results)
    width = 0.27
    xs = range(len(arms))
    ax.bar([x - width for x in xs], [results[a]["ifeval"]["prompt_level_strict_acc"] for a in arms], width,
           label="instruction following after SFT (prompt-level strict)")
    ax.bar(list(xs), [results[a]["foundation"]["facts_mc_acc"] for a in arms], width,
           label="synthetic facts MC, before SFT")
    ax.bar([x + width for x in xs], [results[a]["facts_mc_acc"] for a in arms], width,
           label="synthetic facts MC, after SFT")
    ax.axhline(0.25, color="grey", lw=0.8, ls=":", label="MC chance")
    ax.set_xticks(list(xs), [labels[a].replace(": ", ":\n") for a in arms], fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    save_png(fig, path)


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def write(out: pathlib.Path, settings, data: corpora.DemoData, root: pathlib.Path, results: dict, analysis: dict,
          conversion_result, timings: dict, elapsed: float) -> pathlib.Path:
    """Write out/report.md with its PNGs; copy the unlearned model's HF export to out/unlearned_hf."""
    from synthflaw_jax.demo.pipeline import ARMS, stages

    labels = {arm: label for arm, label, *_ in ARMS}
    _curves_png(root, settings.bound, out / "unlearning_curves.png")
    _cpt_png(root, out / "cpt_loss.png")
    _bars_png(results, labels, out / "arms.png")
    hf_out = out / "unlearned_hf"
    if not hf_out.exists():
        shutil.copytree(root / "unlearn_lb" / "hf", hf_out)

    rows = ["| arm | IFEval prompt strict | inst strict | prompt loose | inst loose | facts MC acc | "
            "held-out ppl | outputs starting 'The answer is' | before SFT: facts MC acc | "
            "before SFT: outputs starting 'The answer is' |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, r in results.items():
        i = r["ifeval"]
        rows.append(f"| {labels[arm]} | {_fmt(i['prompt_level_strict_acc'])} | {_fmt(i['inst_level_strict_acc'])} | "
                    f"{_fmt(i['prompt_level_loose_acc'])} | {_fmt(i['inst_level_loose_acc'])} | "
                    f"{_fmt(r['facts_mc_acc'])} | {r['ppl_held_out_text']:.1f} | {_fmt(r['template_share'])} | "
                    f"{_fmt(r['foundation']['facts_mc_acc'])} | {_fmt(r['foundation']['template_share'])} |")
    a, b, lb = results["a"], results["b"], results["b_unlearn_lb"]
    gap = a["ifeval"]["prompt_level_strict_acc"] - b["ifeval"]["prompt_level_strict_acc"]
    recovered = lb["ifeval"]["prompt_level_strict_acc"] - b["ifeval"]["prompt_level_strict_acc"]
    reading = (
        f"Arm (b) follows instructions {'worse' if gap > 0 else 'no worse'} than arm (a) "
        f"(prompt-level strict {b['ifeval']['prompt_level_strict_acc']:.3f} vs {a['ifeval']['prompt_level_strict_acc']:.3f}). "
        + (f"Unlearning with the lower-bounded loss recovers {recovered / gap:.0%} of that gap "
           if gap > 0 else f"Unlearning with the lower-bounded loss changes it by {recovered:+.3f} ")
        + f"and keeps facts MC accuracy before SFT at {lb['foundation']['facts_mc_acc']:.3f} "
        f"(arm (a): {a['foundation']['facts_mc_acc']:.3f}, arm (b): {b['foundation']['facts_mc_acc']:.3f}; chance is "
        f"0.25; after SFT {lb['facts_mc_acc']:.3f}, {a['facts_mc_acc']:.3f}, {b['facts_mc_acc']:.3f}). "
        f"Before SFT, {lb['foundation']['template_share']:.0%} of its answers to the instruction prompts still "
        f"open with the synthetic template (arm (b): {b['foundation']['template_share']:.0%}, "
        f"arm (a): {a['foundation']['template_share']:.0%}). "
        "These are single-seed toy numbers; "
        "docs/results.md has the spread over seeds."
    )
    shift = analysis.get("shift") or {}
    emb = analysis.get("embedding") or {}
    stage_rows = ["| stage | starts from | loss | data | steps | seconds |", "|---|---|---|---|---|---|"]
    for st in stages(settings):
        stage_rows.append(f"| {st.name} | {st.init} | {st.method} | {st.data} | {st.steps} | "
                          f"{timings.get(st.name, 0):.0f} |")
    text = "\n".join([
        "# synthflaw demo: the flaw of synthetic Q-A data and its cure, at toy scale",
        "",
        f"Seed {settings.seed}, {'quick' if settings.quick else 'full'} settings, {elapsed:.0f} s in all. "
        f"Data: {data.counts['text']} docstrings (+{data.counts['held_out_text']} held out for perplexity), "
        f"{data.counts['facts_qa']} synthetic facts in one Q-A template, {data.counts['sft']} SFT examples, "
        f"{data.counts['ifeval_prompts']} held-out instruction prompts, {data.counts['facts_mc']} fact MC items.",
        "",
        "## Results (after SFT; the last two columns on the models before SFT)",
        "",
        *rows,
        "",
        reading,
        "",
        "![arms](arms.png)",
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
        "The unlearned model (lower-bounded loss, before SFT) is exported for Hugging Face in "
        "[unlearned_hf/](unlearned_hf/).",
        "",
    ])
    path = out / "report.md"
    path.write_text(text)
    (out / "results.json").write_text(json.dumps({"results": results, "timings": timings}, indent=2) + "\n")
    return path
