"""Summarise `synthflaw demo` runs over seeds: each arm's mean ± sd (per-seed values), per
instruction kind, and the claims with 95% paired bootstrap intervals over seeds and
prompts (the same code as each run's report, `synthflaw_jax.demo.claims`).

    python bench/summarize_demo_seeds.py runs/demo_seed0 runs/demo_seed1 ... [--recommended ARM]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

from synthflaw_jax.demo import claims as claims_lib

COLUMNS = (
    ("IFEval valid-strict", lambda r: r["valid_strict_acc"]),
    ("valid outputs", lambda r: r["valid_share"]),
    ("IFEval strict", lambda r: r["ifeval"]["prompt_level_strict_acc"]),
    ("facts MC before SFT", lambda r: r["foundation"]["facts_mc_acc"]),
    ("opens with template before SFT", lambda r: r["foundation"]["template_share_eval_prompts"]),
    ("held-out ppl", lambda r: r["ppl_held_out_text"]),
)


def _cell(values: list[float], digits: int = 3) -> str:
    per_seed = ", ".join(f"{v:.{digits}f}" for v in values)
    if len(values) < 2:
        return per_seed
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f} ({per_seed})"


def load_runs(dirs: list[str]) -> list[dict]:
    """Each directory's results.json; exits with a one-line error when one is missing."""
    runs = []
    for d in dirs:
        path = pathlib.Path(d) / "results.json"
        if not path.is_file():
            sys.exit(f"{path}: not found (is {d} a finished `synthflaw demo` output?)")
        runs.append(json.loads(path.read_text()))
    return runs


def main(argv: list[str] | None = None) -> None:
    """Print the markdown tables for docs/results.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--recommended", help="the cure to test (default: the rule on the seeds' dev prompts)")
    args = parser.parse_args(argv)
    payloads = load_runs(args.dirs)
    arms = [arm for arm in payloads[0]["results"] if all(arm in p["results"] for p in payloads)]
    runs = [{arm: p["results"][arm] for arm in arms} for p in payloads]
    print(f"{len(runs)} seeds ({', '.join(str(p['settings']['seed']) for p in payloads)}): "
          "mean ± sd (per seed)\n")
    print("| arm | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for arm in arms:
        cells = [_cell([get(r[arm]) for r in runs], 0 if name == "held-out ppl" else 3) for name, get in COLUMNS]
        print(f"| {arm} | " + " | ".join(cells) + " |")

    kinds = list(runs[0]["a"]["per_kind"])
    print("\nIFEval valid-strict per kind, mean over seeds (share of valid outputs):\n")
    print("| arm | " + " | ".join(kinds) + " |")
    print("|---" * (len(kinds) + 1) + "|")
    for arm in arms:
        cells = [f"{np.mean([r[arm]['per_kind'][k]['valid_strict_acc'] for r in runs]):.2f} "
                 f"({np.mean([r[arm]['per_kind'][k]['valid_share'] for r in runs]):.0%})" for k in kinds]
        print(f"| {arm} | " + " | ".join(cells) + " |")

    recommended = args.recommended or claims_lib.recommend(runs)
    per_seed = [p.get("recommended") for p in payloads]
    print(f"\nRecommended over these seeds (dev-prompt rule): {recommended}; per seed: {', '.join(map(str, per_seed))}\n")
    print("\n".join(claims_lib.claims_table(claims_lib.evaluate_claims(runs, recommended))))
    for arm in arms:
        if arm.startswith("b_unlearn_") and arm != recommended:
            cure = [c for c in claims_lib.evaluate_claims(runs, arm) if c.key.startswith("cure")]
            print(f"\n{arm}: " + "; ".join(f"{c.key} {c.interval} ({'shown' if c.shown else 'not shown'})"
                                          for c in cure))
    seconds = [sum(p["timings"].values()) for p in payloads]
    print(f"\nSeconds of work per run: {', '.join(f'{s:.0f}' for s in seconds)}")


if __name__ == "__main__":
    main()
