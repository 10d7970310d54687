"""Summarise `synthflaw demo` runs over seeds: mean ± sd and per-seed values of each arm, and
the paired per-seed differences the paper's claims are about.

    python bench/summarize_demo_seeds.py runs/demo_seed0 runs/demo_seed1 runs/demo_seed2
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

COLUMNS = (
    ("IFEval prompt strict", lambda r: r["ifeval"]["prompt_level_strict_acc"]),
    ("prompt loose", lambda r: r["ifeval"]["prompt_level_loose_acc"]),
    ("facts MC after SFT", lambda r: r["facts_mc_acc"]),
    ("facts MC before SFT", lambda r: r["foundation"]["facts_mc_acc"]),
    ("template share before SFT", lambda r: r["foundation"]["template_share"]),
    ("held-out ppl", lambda r: r["ppl_held_out_text"]),
)


def _cell(values: list[float], digits: int = 3) -> str:
    per_seed = ", ".join(f"{v:.{digits}f}" for v in values)
    if len(values) < 2:
        return per_seed
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f} ({per_seed})"


def main(dirs: list[str]) -> None:
    """Print the markdown tables for docs/results.md."""
    runs = [json.loads((pathlib.Path(d) / "results.json").read_text()) for d in dirs]
    arms = list(runs[0]["results"])
    print(f"{len(runs)} seeds: mean ± sd (per seed)\n")
    print("| arm | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for arm in arms:
        cells = []
        for name, get in COLUMNS:
            cells.append(_cell([get(r["results"][arm]) for r in runs], 0 if name == "held-out ppl" else 3))
        print(f"| {arm} | " + " | ".join(cells) + " |")

    strict = {arm: np.array([COLUMNS[0][1](r["results"][arm]) for r in runs]) for arm in arms}
    mc = {arm: np.array([COLUMNS[3][1](r["results"][arm]) for r in runs]) for arm in arms}
    print("\nPaired per-seed differences:\n")
    print(f"- IFEval strict, (a) - (b): {_cell(list(strict['a'] - strict['b']))}")
    for arm in arms[2:]:
        print(f"- IFEval strict, {arm} - (b): {_cell(list(strict[arm] - strict['b']))}; "
              f"facts MC before SFT, {arm} - (a): {_cell(list(mc[arm] - mc['a']))}")
    seconds = [sum(r["timings"].values()) for r in runs]
    print(f"\nStage + evaluation seconds per run: {', '.join(f'{s:.0f}' for s in seconds)}")


if __name__ == "__main__":
    main(sys.argv[1:])
