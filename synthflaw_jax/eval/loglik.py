"""Batched, jitted log-likelihood of chosen tokens: the engine of multiple choice and perplexity.

A request is a token sequence plus a 0/1 weight per token marking the tokens to score
(each scored token is predicted from everything before it in the sequence). Requests are
sorted by length, right-padded to power-of-two lengths and cut into fixed-size batches, so
a whole benchmark compiles a handful of shapes.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models import llama
from synthflaw_jax.models.generate import Static, bucket_length, place_batch

log = logging.getLogger(__name__)


class Request(NamedTuple):
    """Token ids and a weight per token (1 = score this token given the ones before it)."""

    ids: Sequence[int]
    weights: Sequence[float]


class Score(NamedTuple):
    """Sum of log-probabilities of the scored tokens, their count, and whether each scored
    token was the model's argmax (greedy) choice."""

    logprob: float
    tokens: int
    greedy: bool


@functools.partial(jax.jit, static_argnames=("cfg", "mesh"))
def _score_batch(params, ids, mask, weights, *, cfg, mesh):
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    logits, _, _ = llama.CausalLM(cfg.value, mesh).apply({"params": params}, ids, positions, mask)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    targets = ids[:, 1:]
    picked = jnp.take_along_axis(logp, targets[:, :, None], axis=-1)[..., 0]
    w = weights[:, 1:]
    is_max = jnp.argmax(logits[:, :-1], axis=-1) == targets
    return jnp.sum(picked * w, axis=-1), jnp.all(is_max | (w == 0), axis=-1)


def score_requests(model: Any, requests: Sequence[Request], batch_size: int = 8,
                   progress: bool | str = False) -> list[Score]:
    """Scores of each request, in order, from a `LoadedModel` (`.config`, `.params`, `.mesh`).
    `progress` (True or a label) shows a bar of sequences scored."""
    from tqdm.auto import tqdm

    if not requests:
        return []
    bar = tqdm(total=len(requests), desc=progress if isinstance(progress, str) else "scoring", unit="seq",
               disable=not progress)
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].ids))
    results: list[Score | None] = [None] * len(requests)
    cfg = Static(model.config)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        length = bucket_length(len(requests[idx[0]].ids))
        ids = np.zeros((batch_size, length), np.int32)
        mask = np.zeros((batch_size, length), np.int32)
        weights = np.zeros((batch_size, length), np.float32)
        for row, i in enumerate(idx):
            r = requests[i]
            n = len(r.ids)
            ids[row, :n], mask[row, :n], weights[row, :n] = r.ids, 1, r.weights
        # Rows beyond the requests stay all padding: their weights are 0 and they are ignored.
        ids, mask, weights = (place_batch(x, model.mesh) for x in (ids, mask, weights))
        logprob, greedy = _score_batch(model.params, ids, mask, weights, cfg=cfg, mesh=model.mesh)
        logprob, greedy = np.asarray(logprob), np.asarray(greedy)
        for row, i in enumerate(idx):
            results[i] = Score(float(logprob[row]), int(np.sum(requests[i].weights[1:])), bool(greedy[row]))
        log.debug("scored %d/%d sequences", min(start + batch_size, len(order)), len(order))
        bar.update(len(idx))
    bar.close()
    return results  # type: ignore[return-value]


def as_model(model: Any):
    """A `LoadedModel` from itself, a path (HF directory or our checkpoint), or a function
    returning one (so callers can validate their data before paying for the load)."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from synthflaw_jax.models.loading import load

        return load(model)
    if callable(model) and not hasattr(model, "params"):
        return model()
    return model


def require_tokenizer(model: Any):
    """The model's tokenizer; a SynthflawError when it ships none."""
    tok = model.tokenizer
    if tok is None:
        raise SynthflawError(f"{model.path}: the model has no tokenizer files; this evaluation needs one")
    return tok


def check_ids(ids: Sequence[int], vocab_size: int, where: str) -> None:
    """Refuse token ids the model's embedding does not have."""
    if ids and (max(ids) >= vocab_size or min(ids) < 0):
        raise SynthflawError(f"{where}: tokenizer produced ids outside the model's vocabulary [0, {vocab_size})")
