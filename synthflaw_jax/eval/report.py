"""The suite's side-by-side report: headline metrics as a table, markdown and a bar chart."""
from __future__ import annotations

import pathlib
from typing import Any, Sequence

# type -> (metric, higher is better)
HEADLINE = {
    "ifeval": [("prompt_level_strict_acc", True), ("inst_level_strict_acc", True),
               ("prompt_level_loose_acc", True), ("inst_level_loose_acc", True)],
    "mc": [("acc", True), ("acc_norm", True)],
    "ppl": [("ppl", False)],
}


def headline_table(tasks: Sequence[Any], names: Sequence[str], metrics: dict) -> list[dict[str, Any]]:
    """Rows `{"task", "type", "metric", "higher_is_better", "values": {model: value}}`."""
    rows = []
    for t in tasks:
        for metric, higher in HEADLINE[t.type]:
            rows.append({"task": t.name, "type": t.type, "metric": metric, "higher_is_better": higher,
                         "values": {n: metrics[n][t.name][metric] for n in names}})
    return rows


def _fmt(x: float, metric: str) -> str:
    return f"{x:.3f}" if metric == "ppl" else f"{100 * x:.1f}"


def markdown(results: dict[str, Any]) -> str:
    """`report.md`: one row per task and metric, one column per model (accuracies in %)."""
    names = [m["name"] for m in results["models"]]
    lines = ["# Evaluation report", ""]
    lines += [f"- `{m['name']}`: {m['path']}" for m in results["models"]]
    lines += ["", "| task | metric | " + " | ".join(names) + " |",
              "|---|---|" + "---:|" * len(names)]
    for row in results["table"]:
        vals = row["values"]
        best = (max if row["higher_is_better"] else min)(vals.values())
        cells = []
        for n in names:
            cell = _fmt(vals[n], row["metric"])
            cells.append(f"**{cell}**" if len(names) > 1 and vals[n] == best else cell)
        arrow = "↑" if row["higher_is_better"] else "↓"
        lines.append(f"| {row['task']} | {row['metric']} {arrow} | " + " | ".join(cells) + " |")
    lines += ["", "Accuracies in %, perplexity as is; the best value of each row is bold.", ""]
    for t in results["tasks"]:
        opts = ", ".join(f"{k}={v}" for k, v in sorted(t["options"].items())) or "defaults"
        lines.append(f"- {t['name']} ({t['type']}): {opts}")
    lines += ["", "![chart](chart.png)", ""]
    return "\n".join(lines)


def bar_chart(results: dict[str, Any], path: pathlib.Path) -> None:
    """`chart.png`: grouped bars per model, accuracies on the left, perplexities on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [m["name"] for m in results["models"]]
    acc = [r for r in results["table"] if r["metric"] != "ppl"]
    ppl = [r for r in results["table"] if r["metric"] == "ppl"]
    panels = [(rows, title) for rows, title in ((acc, "accuracy (higher is better)"),
                                                  (ppl, "perplexity (lower is better)")) if rows]
    widths = [max(2, len(rows)) for rows, _ in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.2 * sum(widths) + 2, 4.5),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, (rows, title) in zip(axes[0], panels):
        x = np.arange(len(rows))
        w = 0.8 / len(names)
        for i, n in enumerate(names):
            ax.bar(x + (i - (len(names) - 1) / 2) * w, [r["values"][n] for r in rows], w, label=n)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{r['task']}\n{r['metric']}" for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if rows is acc:
            ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
