"""How much an IFEval score moves when generation is allowed to run longer.

A run at a short --max-new-tokens cuts some responses before they end; "at least N words",
"end with this phrase" or "add a P.S." can then fail only because of the cut. Regenerating
every cut prompt at the long limit costs nearly a whole long run, so this regenerates a
seeded random sample of the cut prompts, measures how their per-prompt scores change, and
estimates the score the long run would have given:

    estimate = short score + (cut prompts / all prompts) * mean change over the sample

with a 95% bootstrap interval over the sampled prompts. Greedy decoding is deterministic,
so a prompt that ended before the short limit would write the same response at the long one.

    python bench/ifeval_truncation.py --short-out OUT512 --model smollm2-135m-instruct \\
        --max-new-tokens 512 --long-max-new-tokens 1280 --sample 32 --out OUT_CHECK
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from scipy import stats

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cut_prompts(responses: list[str], tokenizer, max_new_tokens: int, slack: int = 4) -> list[int]:
    """Indices of responses that (re-tokenized) reach the limit: they were still running."""
    return [i for i, r in enumerate(responses)
            if len(tokenizer(r, add_special_tokens=False)["input_ids"]) >= max_new_tokens - slack]


def per_prompt_scores(records, responses: list[str]) -> dict[str, np.ndarray]:
    """Per prompt: all-followed (strict, loose) and instructions followed (strict, loose)."""
    from synthflaw_jax.eval.ifeval import scoring

    results = scoring.score(records, responses)
    return {
        "prompt_strict": np.array([r.follow_all_strict for r in results], float),
        "prompt_loose": np.array([r.follow_all_loose for r in results], float),
        "inst_strict": np.array([sum(r.strict) for r in results], float),
        "inst_loose": np.array([sum(r.loose) for r in results], float),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short-out", required=True, help="the short run's `synthflaw eval ifeval --out`")
    p.add_argument("--model", required=True)
    p.add_argument("--max-new-tokens", type=int, required=True, help="the short run's limit")
    p.add_argument("--long-max-new-tokens", type=int, default=1280)
    p.add_argument("--sample", type=int, default=32, help="cut prompts to regenerate")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)

    from synthflaw_jax import named_models
    from synthflaw_jax.data.tokenizer import load_tokenizer
    from synthflaw_jax.eval.ifeval import io, runner

    short = pathlib.Path(a.short_out)
    metrics = json.loads((short / runner.METRICS_FILE).read_text())
    records = io.load_prompts(metrics["prompts_file"])
    by_prompt = io.load_responses(short / runner.RESPONSES_FILE)
    responses = [by_prompt[r.prompt] for r in records]
    tok = load_tokenizer(named_models.resolve(a.model))
    cut = cut_prompts(responses, tok, a.max_new_tokens)
    rng = np.random.default_rng(a.seed)
    sample = sorted(rng.choice(cut, size=min(a.sample, len(cut)), replace=False).tolist())
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sample_prompts = out / "sample_prompts.jsonl"
    src_lines = [line for line in pathlib.Path(metrics["prompts_file"]).read_text().splitlines() if line.strip()]
    sample_prompts.write_text("".join(src_lines[i] + "\n" for i in sample))
    long_dir = out / "long"
    if not (long_dir / runner.METRICS_FILE).exists():
        runner.run(long_dir, prompts_path=sample_prompts, model_path=a.model, overwrite=True,
                   gen_kwargs={"max_new_tokens": a.long_max_new_tokens, "batch_size": a.batch_size,
                               "progress": True})
    long_by_prompt = io.load_responses(long_dir / runner.RESPONSES_FILE)
    long_responses = [long_by_prompt[records[i].prompt] for i in sample]
    short_all = per_prompt_scores(records, responses)
    long_sample = per_prompt_scores([records[i] for i in sample], long_responses)
    n_inst = sum(len(r.instruction_id_list) for r in records)
    still_cut = len(cut_prompts(long_responses, tok, a.long_max_new_tokens))

    report = {"prompts": len(records), "instructions": n_inst, "cut_at_short": len(cut),
              "sampled": len(sample), "sample_still_cut_at_long": still_cut,
              "short_max_new_tokens": a.max_new_tokens, "long_max_new_tokens": a.long_max_new_tokens}
    boot = rng.integers(0, len(sample), (4000, len(sample)))
    for key, values in short_all.items():
        denom = n_inst if key.startswith("inst") else len(records)
        change = long_sample[key] - values[sample]
        scale = len(cut) / denom
        short_score = values.sum() / denom
        means = change[boot].mean(axis=1)
        changed = int(np.count_nonzero(change))
        # The bootstrap cannot see changes the sample happened to miss (0 changed -> a point):
        # the exact binomial bound on the share of cut prompts whose score changes says how much
        # it could have missed, as the most that share could move the score either way.
        share_hi = float(stats.beta.ppf(0.975, changed + 1, len(sample) - changed)) if changed < len(sample) else 1.0
        largest = float(np.max(np.abs(change))) if changed else (1.0 if key.startswith("prompt") else
                                                                  max(len(records[i].instruction_id_list) for i in cut))
        report[key] = {"short": short_score, "sample_changed_prompts": changed,
                       "estimate_long": short_score + scale * change.mean(),
                       "interval_95": [short_score + scale * float(np.percentile(means, 2.5)),
                                       short_score + scale * float(np.percentile(means, 97.5))],
                       "changed_share_upper_95": share_hi,
                       "max_shift_upper_95": scale * share_hi * largest}
    text = json.dumps(report, indent=2)
    (out / "estimate.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
