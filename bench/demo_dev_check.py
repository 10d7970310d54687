"""Per-kind instruction following of a demo run's SFT'd models on the DEVELOPMENT prompts
(other topics than the evaluation prompts): what the toy's settings were calibrated on, so
that the evaluation prompts are never used for a choice.

    python bench/demo_dev_check.py runs/demo_seed0 [--arms a,b,c] [--max-new-tokens 48]
"""
from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

import synthflaw_jax
from synthflaw_jax.demo import corpora, pipeline
from synthflaw_jax.eval import degenerate
from synthflaw_jax.eval.ifeval import io as ifeval_io
from synthflaw_jax.eval.ifeval import scoring


def main(argv: list[str] | None = None) -> None:
    """Print valid-strict accuracy and valid share per kind for each arm."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--arms", default="a,b,c")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    run = pathlib.Path(args.run)
    records = ifeval_io.load_prompts(run / "data" / "dev_prompts.jsonl")
    kinds = [corpora.KIND_OF_INSTRUCTION[r.instruction_id_list[0]] for r in records]
    names = list(dict.fromkeys(kinds))
    print("| arm | " + " | ".join(names) + " | all |")
    print("|---" * (len(names) + 2) + "|")
    for arm in args.arms.split(","):
        model_stage, _ = pipeline.arm_stages(arm)
        model = synthflaw_jax.load(run / "stages" / model_stage / "hf")
        responses = [r.strip() for r in model.generate([r.prompt for r in records], args.max_new_tokens,
                                                       chat_template=False, batch_size=16)]
        results = scoring.score(records, responses)
        ok = np.array([res.follow_all_strict and not degenerate.is_degenerate(resp)
                       for res, resp in zip(results, responses)])
        valid = np.array([not degenerate.is_degenerate(resp) for resp in responses])
        cells = [f"{ok[[k == n for k in kinds]].mean():.2f} ({valid[[k == n for k in kinds]].mean():.0%})"
                 for n in names]
        print(f"| {arm} | " + " | ".join(cells) + f" | {ok.mean():.2f} |")
        (run / "eval").mkdir(exist_ok=True)
        (run / "eval" / f"dev_{arm}.jsonl").write_text("".join(
            json.dumps({"kind": k, "prompt": rec.prompt, "response": resp}) + "\n"
            for k, rec, resp in zip(kinds, records, responses)))


if __name__ == "__main__":
    main()
