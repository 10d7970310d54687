"""Demo evaluation of one model, with per-item results kept for paired intervals.

After SFT: instruction following (IFEval checkers on greedy outputs; a response counts
only when it is also not degenerate, see `eval/degenerate.py`), facts multiple choice,
perplexity on held-out text. Before SFT (the foundation model): facts multiple choice and
the share of greedy answers that open with the synthetic template, on the evaluation
prompts and, separately, on the development prompts (used for choices, never the
evaluation ones).
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

import synthflaw_jax
from synthflaw_jax.demo import corpora
from synthflaw_jax.eval import degenerate, loglik, perplexity
from synthflaw_jax.eval.ifeval import io as ifeval_io
from synthflaw_jax.eval.ifeval import scoring

SYNTHETIC_OPENING = "The answer is"


def facts_mc_correct(model, data: corpora.DemoData) -> list[bool]:
    """Per fact: does the true value get the highest log-likelihood after "The X of Y is"."""
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
    correct = []
    for item, n in zip(items, sizes):
        lp = [next(scores).logprob for _ in range(n)]
        correct.append(bool(int(np.argmax(lp)) == item["answer"]))
    return correct


def _opens_with_template(model, prompts_file: pathlib.Path) -> list[bool]:
    prompts = [r.prompt for r in ifeval_io.load_prompts(prompts_file)]
    openings = model.generate(prompts, 6, chat_template=False, batch_size=16)
    return [o.strip().startswith(SYNTHETIC_OPENING) for o in openings]


def _write_json(path: pathlib.Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.rename(path)


def evaluate_foundation(model_dir: pathlib.Path, data: corpora.DemoData, out: pathlib.Path) -> dict:
    """A model before SFT: facts MC and template shares (cached in out/foundation.json)."""
    cached = out / "foundation.json"
    if cached.exists():
        return json.loads(cached.read_text())
    model = synthflaw_jax.load(model_dir)
    mc = facts_mc_correct(model, data)
    opens_eval = _opens_with_template(model, data.path("ifeval_prompts"))
    opens_dev = _opens_with_template(model, data.path("dev_prompts"))
    result = {
        "facts_mc_acc": float(np.mean(mc)),
        "template_share_eval_prompts": float(np.mean(opens_eval)),
        "template_share_dev_prompts": float(np.mean(opens_dev)),
        "per_item": {"facts_mc_correct": mc, "opens_with_template": opens_eval},
    }
    _write_json(cached, result)
    return result


def _per_kind(kinds: list[str], values: list[bool]) -> dict[str, float]:
    out: dict[str, list[bool]] = {}
    for kind, value in zip(kinds, values):
        out.setdefault(kind, []).append(value)
    return {kind: float(np.mean(v)) for kind, v in out.items()}


def evaluate_model(model_dir: pathlib.Path, data: corpora.DemoData, out: pathlib.Path,
                   max_new_tokens: int) -> dict:
    """All after-SFT metrics of the model in `model_dir`; responses and per-prompt scores
    saved under `out` (cached in out/metrics.json)."""
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
    reasons = [degenerate.degenerate_reasons(r) for r in responses]
    valid = [not r for r in reasons]
    follows = [res.follow_all_strict for res in results]
    valid_follows = [f and v for f, v in zip(follows, valid)]
    kinds = [corpora.KIND_OF_INSTRUCTION.get(r.instruction_id_list[0], r.instruction_id_list[0]) for r in records]
    held_out = [json.loads(line)["text"] for line in data.path("held_out_text").read_text().splitlines()]
    mc = facts_mc_correct(model, data)
    summary = {
        "ifeval": {k: metrics[k] for k in ("prompt_level_strict_acc", "inst_level_strict_acc",
                                           "prompt_level_loose_acc", "inst_level_loose_acc")},
        "valid_strict_acc": float(np.mean(valid_follows)),
        "valid_share": float(np.mean(valid)),
        "per_kind": {kind: {"valid_strict_acc": _per_kind(kinds, valid_follows)[kind],
                            "strict_acc": _per_kind(kinds, follows)[kind],
                            "valid_share": _per_kind(kinds, valid)[kind]} for kind in dict.fromkeys(kinds)},
        "facts_mc_acc": float(np.mean(mc)),
        "ppl_held_out_text": perplexity.evaluate(model, held_out, max_length=128, batch_size=16)["ppl"],
        "template_share_after_sft": float(np.mean([r.startswith(SYNTHETIC_OPENING) for r in responses])),
        "per_item": {"valid_follow": valid_follows, "kind": kinds, "facts_mc_correct": mc},
    }
    ifeval_io.write_jsonl_atomic(out / "responses.jsonl", [
        {"prompt": rec.prompt, "kind": kind, "response": resp, "follow_all_strict": res.follow_all_strict,
         "degenerate": why}
        for rec, kind, resp, res, why in zip(records, kinds, responses, results, reasons)
    ])
    _write_json(cached, summary)
    return summary
