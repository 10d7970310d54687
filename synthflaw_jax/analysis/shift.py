"""Output distribution shift between two models A and B on probe prompts.

At every (non-padding) position of a probe prompt both models give a next-token
distribution; we average over all such positions KL(A||B), KL(B||A) and JS (all in bits,
JS in [0, 1]) and the top-k overlap |topk_A & topk_B| / k. Separately, each model's greedy
continuation of each prompt is checked for starting with a template string (the synthetic
corpus's dominant answer opening).
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from synthflaw_jax.analysis import model_io
from synthflaw_jax.analysis.patterns import starts_with_template
from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)

LN2 = np.log(2.0)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log-probabilities over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _check_pair(logits_a, logits_b, mask):
    a, b = np.asarray(logits_a), np.asarray(logits_b)
    if a.shape != b.shape:
        raise SynthflawError(f"the two models' logits differ in shape: {a.shape} vs {b.shape}")
    m = np.ones(a.shape[:-1], dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    if m.shape != a.shape[:-1]:
        raise ValueError(f"mask shape {m.shape} does not match logits {a.shape[:-1]}")
    return a, b, m


def position_divergences(logits_a, logits_b, mask=None):
    """(KL(A||B), KL(B||A), JS) in bits at each selected position, as 1-D arrays."""
    a, b, m = _check_pair(logits_a, logits_b, mask)
    la, lb = log_softmax(a[m]), log_softmax(b[m])
    pa, pb = np.exp(la), np.exp(lb)
    kl_ab = (pa * (la - lb)).sum(-1) / LN2
    kl_ba = (pb * (lb - la)).sum(-1) / LN2
    lm = np.log(0.5 * (pa + pb))
    js = 0.5 * ((pa * (la - lm)).sum(-1) + (pb * (lb - lm)).sum(-1)) / LN2
    return np.maximum(kl_ab, 0.0), np.maximum(kl_ba, 0.0), np.clip(js, 0.0, 1.0)


def topk_sets_overlap(logits_a, logits_b, k: int, mask=None) -> np.ndarray:
    """|topk_A & topk_B| / k at each selected position (ties broken by the lower token id)."""
    a, b, m = _check_pair(logits_a, logits_b, mask)
    k = min(k, a.shape[-1])
    ta = np.argsort(-a[m], axis=-1, kind="stable")[:, :k]
    tb = np.argsort(-b[m], axis=-1, kind="stable")[:, :k]
    return np.array([len(set(x) & set(y)) / k for x, y in zip(ta.tolist(), tb.tolist())])


def logit_shift(logits_a, logits_b, mask=None, k: int = 10) -> dict:
    """Mean KL both ways, JS and top-k overlap over the selected positions of one batch."""
    kl_ab, kl_ba, js = position_divergences(logits_a, logits_b, mask)
    overlap = topk_sets_overlap(logits_a, logits_b, k, mask)
    if len(js) == 0:
        raise SynthflawError("no prompt position to compare")
    return {"kl_a_b_bits": float(kl_ab.mean()), "kl_b_a_bits": float(kl_ba.mean()),
            "js_bits": float(js.mean()), "topk_overlap": float(overlap.mean()), "k": k, "positions": len(js)}


def template_share(generate_fn: Callable[[list[str], int], list[str]], prompts: Sequence[str], template: str,
                   max_new_tokens: int = 16, batch_size: int = 8, desc: str = "generating",
                   progress: bool = True) -> dict:
    """Share of greedy continuations `generate_fn(prompts, max_new_tokens)` that begin with `template`."""
    outputs = []
    chunks = range(0, len(prompts), batch_size)
    for start in tqdm(chunks, desc=desc, unit="batch", disable=not progress):
        chunk = list(prompts[start:start + batch_size])
        got = list(generate_fn(chunk, max_new_tokens))
        if len(got) != len(chunk):
            raise SynthflawError(f"generate returned {len(got)} outputs for {len(chunk)} prompts")
        outputs.extend(got)
    hits = sum(starts_with_template(o, template) for o in outputs)
    return {"template": template, "share": hits / len(outputs) if outputs else None, "count": hits,
            "prompts": len(outputs), "examples": [o[:200] for o in outputs[:3]]}


def compare_models(model_a, model_b, tokenizer, prompts: Sequence[str], *, template: str | None = None,
                   k: int = 10, batch_size: int = 8, max_len: int = 256, max_new_tokens: int = 16,
                   progress: bool = True) -> dict:
    """Shift metrics of model B against model A on `prompts` (both use `tokenizer`)."""
    if not prompts:
        raise SynthflawError("no probe prompts")
    model_io.check_tokenizer(model_a, tokenizer, "model A")
    model_io.check_tokenizer(model_b, tokenizer, "model B")
    if int(model_a.config.vocab_size) != int(model_b.config.vocab_size):
        raise SynthflawError(f"the models' vocab sizes differ: {model_a.config.vocab_size} vs "
                             f"{model_b.config.vocab_size}")
    ids = model_io.encode(tokenizer, prompts, max_len, int(model_a.config.vocab_size))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    kl_ab, kl_ba, js, overlap = [], [], [], []
    for batch in tqdm(model_io.batches(ids, batch_size, max_len, pad_id),
                      total=model_io.num_batches(sum(1 for x in ids if x), batch_size),
                      desc="scoring shift", unit="batch", disable=not progress):
        n = len(batch.index)
        la = np.asarray(model_a.logits(batch.input_ids, batch.attention_mask))[:n]
        lb = np.asarray(model_b.logits(batch.input_ids, batch.attention_mask))[:n]
        mask = batch.attention_mask[:n]
        for r in range(n):  # one prompt at a time bounds the float64 copies to [T, V]
            row = slice(r, r + 1)
            for acc, values in zip((kl_ab, kl_ba, js), position_divergences(la[row], lb[row], mask[row])):
                acc.append(values)
            overlap.append(topk_sets_overlap(la[row], lb[row], k, mask[row]))
    kl_ab, kl_ba, js, overlap = (np.concatenate(v) for v in (kl_ab, kl_ba, js, overlap))
    out = {"prompts": len(prompts), "positions": int(len(js)), "k": k,
           "kl_a_b_bits": float(kl_ab.mean()), "kl_b_a_bits": float(kl_ba.mean()),
           "js_bits": float(js.mean()), "topk_overlap": float(overlap.mean())}
    generate_a, generate_b = getattr(model_a, "generate", None), getattr(model_b, "generate", None)
    if template and generate_a is not None and generate_b is not None:
        out["template_share_a"] = template_share(generate_a, prompts, template, max_new_tokens,
                                                 batch_size, "generating (A)", progress)
        out["template_share_b"] = template_share(generate_b, prompts, template, max_new_tokens,
                                                 batch_size, "generating (B)", progress)
    elif template:
        log.warning("a model has no generate(); skipping the template share of greedy outputs")
    return out
