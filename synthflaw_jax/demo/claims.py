"""The demo's claims, each with a paired bootstrap interval, over one run or several seeds.

A run's results map an arm ("a", "b", "c", "b_unlearn_<method>") to its metrics with
per-item values (`evaluate.py`). A difference claim is "shown" only when its 95% interval
excludes 0 in the claimed direction; a threshold claim (a cure's targets) only when its whole
interval is on the claimed side of the threshold (so "perplexity no worse than (b)'s" needs
the interval of the difference at or below 0). The recovered share of the gap follows the
goal as it was set: estimate at least 0.75 and interval above 0. One run gives intervals over prompts (or fact items); several
seeds give intervals over seeds and items (`eval/bootstrap.py`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from synthflaw_jax.eval import bootstrap

# A cure's targets (the issue that set the demo's goal): template share before SFT at most
# 10%, three quarters of the instruction-following gap won back, and the facts kept well
# above what arm (a) knows without synthetic data.
MAX_TEMPLATE_SHARE = 0.10
MIN_RECOVERED = 0.75
MIN_FACTS_GAIN = 0.15


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim, its measured interval and whether the runs show it."""

    key: str
    statement: str
    measure: str
    interval: bootstrap.Interval | None
    shown: bool
    target: str = ""


def _valid_follow(r):
    return r["per_item"]["valid_follow"]


def _mc_before(r):
    return r["foundation"]["per_item"]["facts_mc_correct"]


def _opens(r):
    return r["foundation"]["per_item"]["opens_with_template"]


def _seeds(runs: Sequence[dict], arm: str, get: Callable) -> list:
    return [get(run[arm]) for run in runs]


def recommend(runs: Sequence[dict]) -> str | None:
    """The unlearned arm to recommend, by a rule fixed in advance that reads only the
    development prompts and the facts: among arms whose facts MC before SFT is at least
    arm (a)'s + MIN_FACTS_GAIN, the lowest template share on the development prompts
    before SFT (ties: more facts); when none keeps the facts, the lowest template share."""
    arms = [k for k in runs[0] if k.startswith("b_unlearn_")]
    if not arms:
        return None

    def mean(arm, get):
        return float(np.mean([get(run[arm]) for run in runs]))

    facts_a = mean("a", lambda r: r["foundation"]["facts_mc_acc"])
    template = {arm: mean(arm, lambda r: r["foundation"]["template_share_dev_prompts"]) for arm in arms}
    facts = {arm: mean(arm, lambda r: r["foundation"]["facts_mc_acc"]) for arm in arms}
    keeping = [arm for arm in arms if facts[arm] >= facts_a + MIN_FACTS_GAIN] or arms
    return min(keeping, key=lambda arm: (template[arm], -facts[arm]))


def _difference(runs, x_arm, y_arm, get, key, statement, measure) -> Claim:
    interval = bootstrap.paired_difference(_seeds(runs, x_arm, get), _seeds(runs, y_arm, get))
    return Claim(key, statement, measure, interval, interval.low > 0)


def evaluate_claims(runs: Sequence[dict], recommended: str | None = None) -> list[Claim]:
    """The paper's claims on these runs (one per seed), with `recommended` as the cure
    (default: `recommend(runs)`)."""
    follow = "IFEval valid-strict after SFT (held-out prompts), difference"
    claims = [
        _difference(runs, "c", "b", _valid_follow, "format_flaw",
                    "uniform Q-A (b) follows instructions worse than the same facts in diverse forms (c)", follow),
        _difference(runs, "a", "b", _valid_follow, "flaw_vs_text",
                    "uniform Q-A (b) follows instructions worse than text only (a)", follow),
        _difference(runs, "b", "a", _mc_before, "benefit",
                    "uniform Q-A (b) teaches the facts (vs text only (a))", "facts MC before SFT, difference"),
        _difference(runs, "c", "a", _mc_before, "benefit_diverse",
                    "diverse Q-A (c) teaches the facts (vs text only (a))", "facts MC before SFT, difference"),
    ]
    recommended = recommended or recommend(runs)
    if recommended is None:
        return claims
    r = recommended
    claims.append(_difference(runs, r, "b", _valid_follow, "cure",
                              f"unlearning ({r}) follows instructions better than (b)", follow))
    recovered = bootstrap.recovered_fraction(_seeds(runs, r, _valid_follow), _seeds(runs, "b", _valid_follow),
                                             _seeds(runs, "a", _valid_follow))
    claims.append(Claim("cure_recovers", f"{r} wins back at least {MIN_RECOVERED:.0%} of the (a) - (b) gap",
                        "share of the IFEval valid-strict gap recovered", recovered,
                        recovered.estimate >= MIN_RECOVERED and recovered.low > 0, f">= {MIN_RECOVERED}"))
    template = bootstrap.hierarchical_bootstrap([np.asarray(v, float)[:, None] for v in _seeds(runs, r, _opens)],
                                                lambda m: m[0])
    claims.append(Claim("cure_template", f"{r} no longer opens answers with the template",
                        "template share before SFT (held-out prompts)", template,
                        template.high <= MAX_TEMPLATE_SHARE, f"<= {MAX_TEMPLATE_SHARE}"))
    facts = bootstrap.paired_difference(_seeds(runs, r, _mc_before), _seeds(runs, "a", _mc_before))
    claims.append(Claim("cure_keeps_facts", f"{r} keeps the facts: MC before SFT at least (a) + {MIN_FACTS_GAIN}",
                        "facts MC before SFT, difference to (a)", facts,
                        facts.low >= MIN_FACTS_GAIN, f">= {MIN_FACTS_GAIN}"))
    ppl = bootstrap.paired_difference([[run[r]["ppl_held_out_text"]] for run in runs],
                                      [[run["b"]["ppl_held_out_text"]] for run in runs])
    claims.append(Claim("cure_ppl", f"{r}'s held-out perplexity is no worse than (b)'s",
                        "held-out perplexity, difference to (b) (per seed)", ppl, ppl.high <= 0, "<= 0"))
    return claims


def claims_table(claims: Sequence[Claim]) -> list[str]:
    """Markdown rows: claim, measure, estimate [95% interval], target, shown or not."""
    rows = ["| claim | measured as | estimate [95% interval] | target | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        rows.append(f"| {c.statement} | {c.measure} | {c.interval} | {c.target or '> 0'} | "
                    f"{'**shown**' if c.shown else 'not shown'} |")
    return rows
