"""Demo evaluation of one model: instruction following (IFEval checkers on greedy outputs),
multiple choice on the synthetic facts, perplexity on held-out text, template share."""
from __future__ import annotations

import json
import pathlib

import numpy as np

import synthflaw_jax
from synthflaw_jax.demo import corpora
from synthflaw_jax.eval import loglik, perplexity
from synthflaw_jax.eval.ifeval import io as ifeval_io
from synthflaw_jax.eval.ifeval import scoring

SYNTHETIC_OPENING = "The answer is"


def facts_mc_accuracy(model, data: corpora.DemoData) -> float:
    """Share of the demo's facts whose true value has the highest log-likelihood after "The X of Y is"."""
    items = [json.loads(line) for line in data.path("facts_mc").read_text().splitlines()]
    tok = model.tokenizer
    requests, sizes = [], []
    for item in items:
        ctx = list(tok(item["question"])["input_ids"])
        for choice in item["choices"]:
            cont = list(tok(" " + choice + ".", add_special_tokens=False)["input_ids"])
            requests.append(loglik.Request(ctx + cont, [0.0] * len(ctx) + [1.0] * len(cont)))
        sizes.append(len(item["choices"]))
    scores = iter(loglik.score_requests(model, requests, batch_size=16))
    correct = 0
    for item, n in zip(items, sizes):
        lp = [next(scores).logprob for _ in range(n)]
        correct += int(np.argmax(lp)) == item["answer"]
    return correct / len(items)


def evaluate_foundation(model_dir: pathlib.Path, data: corpora.DemoData, out: pathlib.Path) -> dict:
    """A model before SFT: facts MC accuracy, and the share of its greedy answers to the
    held-out instruction prompts that open with the synthetic template (cached in
    out/foundation.json)."""
    cached = out / "foundation.json"
    if cached.exists():
        return json.loads(cached.read_text())
    model = synthflaw_jax.load(model_dir)
    prompts = [r.prompt for r in ifeval_io.load_prompts(data.path("ifeval_prompts"))]
    openings = model.generate(prompts, 6, chat_template=False, batch_size=16)
    result = {
        "facts_mc_acc": facts_mc_accuracy(model, data),
        "template_share": float(np.mean([o.strip().startswith(SYNTHETIC_OPENING) for o in openings])),
    }
    out.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result, indent=2) + "\n")
    return result


def evaluate_model(model_dir: pathlib.Path, data: corpora.DemoData, out: pathlib.Path,
                   max_new_tokens: int) -> dict:
    """All demo metrics of the model in `model_dir`; responses and scores saved under `out`."""
    cached = out / "metrics.json"
    if cached.exists():
        return json.loads(cached.read_text())
    out.mkdir(parents=True, exist_ok=True)
    model = synthflaw_jax.load(model_dir)
    records = ifeval_io.load_prompts(data.path("ifeval_prompts"))
    responses = model.generate([r.prompt for r in records], max_new_tokens, chat_template=False, batch_size=16)
    responses = [r.strip() for r in responses]
    results = scoring.score(records, responses)
    metrics = scoring.compute_metrics(results)
    held_out = [json.loads(line)["text"] for line in data.path("held_out_text").read_text().splitlines()]
    summary = {
        "ifeval": {k: metrics[k] for k in ("prompt_level_strict_acc", "inst_level_strict_acc",
                                           "prompt_level_loose_acc", "inst_level_loose_acc")},
        "ifeval_per_instruction": metrics["per_instruction"],
        "facts_mc_acc": facts_mc_accuracy(model, data),
        "ppl_held_out_text": perplexity.evaluate(model, held_out, max_length=128, batch_size=16)["ppl"],
        "template_share": float(np.mean([r.startswith(SYNTHETIC_OPENING) for r in responses])),
    }
    ifeval_io.write_jsonl_atomic(out / "responses.jsonl", [
        {"prompt": rec.prompt, "response": resp, "follow_all_strict": res.follow_all_strict}
        for rec, resp, res in zip(records, responses, results)
    ])
    cached.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
