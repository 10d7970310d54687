"""KV-cache generation: one jitted prefill + decode loop over left-padded prompt batches.

`generate_ids` is the token-level core: prompts come left-padded with an attention mask,
positions count each row's real tokens, the prompt is written into a KV cache in one
forward pass, then a `lax.while_loop` decodes one token per step with no host round trip.
Rows stop independently at a stop token (the stop token is emitted, then padding) and the
loop ends early once every row has stopped. `generate_text` adds tokenization, the chat
template, length-sorted batching and decoding on top.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from synthflaw_jax import sharding as shd
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models import llama
from synthflaw_jax.models.config import ModelConfig

log = logging.getLogger(__name__)

CACHE_AXES = {  # llama.init_cache's layout
    "k": ("layers", "cache_batch", "kv_heads", "head_dim", "cache_length"),
    "v": ("layers", "cache_batch", "kv_heads", "cache_length", "head_dim"),
}
SEGMENT_AXES = ("cache_batch", "cache_length")


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: `temperature` 0 is greedy; `top_k` 0 and `top_p` 1 are off.

    Applied in transformers' order: temperature, then top-k, then top-p (nucleus)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if not self.temperature >= 0:
            raise SynthflawError(f"--temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise SynthflawError(f"--top-k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise SynthflawError(f"--top-p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        """True when no randomness is involved."""
        return self.temperature == 0


class Static:
    """Wraps a ModelConfig (an unhashable dataclass) as a jit static argument, compared by value,
    so two loads of the same architecture share compiled code."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return hash(repr(self.value))

    def __eq__(self, other):
        return isinstance(other, Static) and other.value == self.value


def sample_next(logits: jax.Array, key: jax.Array, sampling: Sampling) -> jax.Array:
    """Next token ids [B] from float32 logits [B, V]."""
    if sampling.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return _sample(logits, key, *_knobs(sampling))


def _knobs(sampling: Sampling):
    return jnp.float32(sampling.temperature), jnp.int32(sampling.top_k), jnp.float32(sampling.top_p)


def _sample(logits, key, temperature, top_k, top_p):
    # The knobs are traced values, so one compiled decoder serves every sampling setting.
    logits = logits / temperature
    neg_inf = jnp.finfo(jnp.float32).min
    vocab = logits.shape[-1]
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    rank = jnp.arange(vocab)[None, :]
    in_top_k = (top_k <= 0) | (rank < top_k)
    sorted_logits = jnp.where(in_top_k, sorted_logits, neg_inf)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
    keep = ((mass_before < top_p) | (top_p >= 1.0)) & in_top_k
    keep = jnp.maximum(jnp.sum(keep, axis=-1), 1)
    cutoff = jnp.take_along_axis(sorted_logits, (keep - 1)[:, None], axis=-1)
    logits = jnp.where(logits < cutoff, neg_inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def _lm_head(cfg: ModelConfig, params, hidden):
    """Logits of a few hidden states [B, D] (the model's head, without materialising [B, T, V])."""
    dtype = jnp.dtype(cfg.dtype)
    if cfg.tie_word_embeddings:
        w = params["embed_tokens"]["embedding"].astype(dtype).T
    else:
        w = params["lm_head"]["kernel"].astype(dtype)
    return jnp.dot(hidden.astype(dtype), w).astype(jnp.float32)


def place_batch(x: np.ndarray, mesh):
    """Put a [batch, ...] host array on the mesh with its batch axis over data/fsdp (when they divide it)."""
    if mesh is None:
        return x
    axes = ("batch",) + (None,) * (x.ndim - 1)
    return jax.device_put(x, shd.logical_to_sharding(axes, x.shape, mesh))


def _constrain_cache(cache, mesh):
    """Pin a cache's sharding: stacked (`llama.init_cache`) or per layer (`llama.split_cache`)."""
    if mesh is None:
        return cache

    def pin(path, x):
        name = path[-1].key
        axes = SEGMENT_AXES if name == "segment_ids" else CACHE_AXES[name][5 - x.ndim:]
        return jax.lax.with_sharding_constraint(x, shd.logical_to_sharding(axes, x.shape, mesh))

    return jax.tree_util.tree_map_with_path(pin, cache)


# XLA:CPU's copy insertion without region analysis cannot tell that a step's reads of a
# layer's cache come before that cache's in-place update (nothing orders them), and keeps the
# two apart with two full copies of every layer's cache per decoded token; region analysis
# proves the update safe in place. Set for the decoder's compilation only.
_COMPILER_OPTIONS = {"cpu": {"xla_cpu_copy_insertion_use_region_analysis": True}}


@functools.cache
def _decoder_for(backend: str):
    return jax.jit(_generate, static_argnames=("cfg", "mesh", "max_new_tokens", "greedy"),
                   compiler_options=_COMPILER_OPTIONS.get(backend))


def decoder():
    """The jitted prefill + decode loop (`generate_ids`' core) with the default backend's
    compiler options; `.lower(...)` on it gives the compiled program for inspection."""
    return _decoder_for(jax.default_backend())


FIRST_SEGMENT = 128  # decode steps attending over the first, shortest cache


def cache_segments(max_new_tokens: int) -> list[int]:
    """Generated-token counts at which the decode cache grows: 128, 256, 512, ..., max_new_tokens.

    A step attends over every slot of the cache it carries, written or not; growing the cache
    in doubling segments keeps the never-written slots attended to under about half, at the
    price of one copy of the cache per segment and one more compiled loop body each. A last
    segment shorter than a quarter of the one before is merged into it."""
    ends, end = [], FIRST_SEGMENT
    while end < max_new_tokens:
        ends.append(end)
        end *= 2
    if ends and max_new_tokens - ends[-1] < ends[-1] // 4:
        ends.pop()
    return ends + [max_new_tokens]


def _grow_cache(cache, slots: int, mesh):
    """The per-layer cache with `slots` slots: new slots empty, their segment ids 1 (generated)."""
    extra = slots - cache["segment_ids"].shape[1]

    def grow(x, name):
        pad = [(0, 0)] * x.ndim
        pad[llama.CACHE_SLOT_AXIS[name]] = (0, extra)
        return jnp.pad(x, pad)

    layers = [{name: grow(c[name], name) for name in ("k", "v")} for c in cache["layers"]]
    segments = jnp.pad(cache["segment_ids"], ((0, 0), (0, extra)), constant_values=1)
    return _constrain_cache({"layers": layers, "segment_ids": segments}, mesh)


def _generate(params, input_ids, attention_mask, key, knobs, stop, pad_id, *, cfg, mesh, max_new_tokens, greedy):
    cfg = cfg.value
    model = llama.CausalLM(cfg, mesh)
    batch, prompt_len = input_ids.shape
    mask = attention_mask.astype(jnp.int32)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    segments = cache_segments(max_new_tokens)

    cache = llama.init_cache(cfg, batch, prompt_len + segments[0])
    # Generated slots are all real tokens; causality keeps the not-yet-written ones unseen.
    cache["segment_ids"] = jnp.concatenate([mask, jnp.ones((batch, segments[0]), jnp.int32)], axis=1)
    cache = _constrain_cache(cache, mesh)
    _, hidden, cache = model.apply({"params": params}, input_ids, positions, mask, cache, 0)
    # Left padding puts every row's last prompt token in the last column.
    logits = _lm_head(cfg, params, hidden[:, -1])

    def choose(logits, key):
        return jnp.argmax(logits, axis=-1).astype(jnp.int32) if greedy else _sample(logits, key, *knobs)

    def is_stop(tok):
        return jnp.any(tok[:, None] == stop[None, :], axis=-1)

    key, sub = jax.random.split(key)
    tok = choose(logits, sub)
    out = jnp.full((batch, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(tok)
    done = is_stop(tok)
    ones = jnp.ones((batch, 1), jnp.int32)

    # The loop carries one cache array per layer and reads per-layer weights split off once
    # here: nothing the size of the cache or of the weights is copied inside a step.
    layer_params = llama.split_layers(params)
    cache = _constrain_cache(llama.split_cache(cache), mesh)

    def body(state):
        i, out, done, cache, pos, key = state
        tok = jax.lax.dynamic_slice_in_dim(out, i, 1, axis=1)
        logits, cache = llama.decode_step(cfg, params, layer_params, tok, pos[:, None], ones, cache,
                                          prompt_len + i, mesh)
        key, sub = jax.random.split(key)
        nxt = jnp.where(done, pad_id, choose(logits[:, 0], sub))
        out = jax.lax.dynamic_update_slice_in_dim(out, nxt[:, None], i + 1, axis=1)
        return i + 1, out, done | is_stop(nxt), cache, pos + 1, key

    # Step i feeds token i (cache slot prompt_len + i) and emits token i + 1.
    state = (jnp.int32(0), out, done, cache, positions[:, -1] + 1, key)
    for n, end in enumerate(segments):
        if n:
            state = state[:3] + (_grow_cache(state[3], prompt_len + end, mesh),) + state[4:]
        last = min(end, max_new_tokens - 1)
        state = jax.lax.while_loop(lambda s, last=last: (s[0] < last) & ~jnp.all(s[2]), body, state)
    return state[1]


def generate_ids(cfg: ModelConfig, params, input_ids, attention_mask, *, max_new_tokens: int,
                 sampling: Sampling = Sampling(), key: jax.Array | None = None,
                 stop_ids: Sequence[int] = (), pad_id: int = 0, mesh=None) -> np.ndarray:
    """New token ids [B, max_new_tokens] for left-padded prompts (`attention_mask` 1 = token).

    A row that emits one of `stop_ids` keeps that token and is padded with `pad_id` after
    it. `key` (a `jax.random` key) drives sampling; greedy decoding ignores it."""
    input_ids = np.asarray(input_ids, np.int32)
    attention_mask = np.asarray(attention_mask, np.int32)
    if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
        raise SynthflawError(f"prompt ids {input_ids.shape} and attention mask {attention_mask.shape} "
                             "must both be [batch, seq]")
    if max_new_tokens < 1:
        raise SynthflawError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if not attention_mask[:, -1].all():
        raise SynthflawError("prompts must be left-padded with at least one token per row")
    if input_ids.max(initial=0) >= cfg.vocab_size or input_ids.min(initial=0) < 0:
        raise SynthflawError(f"prompt ids outside the vocabulary [0, {cfg.vocab_size})")
    if key is None:
        key = jax.random.key(0)
    input_ids, attention_mask = place_batch(input_ids, mesh), place_batch(attention_mask, mesh)
    out = decoder()(
        params, input_ids, attention_mask, key, _knobs(sampling), np.asarray(list(stop_ids), np.int32),
        np.int32(pad_id), cfg=Static(cfg), mesh=mesh, max_new_tokens=int(max_new_tokens), greedy=sampling.greedy,
    )
    return np.asarray(out)


# ---------------------------------------------------------------------------- text level

def _as_list(x) -> list[int]:
    if x is None:
        return []
    return [int(i) for i in (x if isinstance(x, (list, tuple)) else [x])]


def stop_token_ids(cfg: ModelConfig, tokenizer=None, assets_dir: pathlib.Path | None = None) -> list[int]:
    """EOS ids from the model config, `generation_config.json` and the tokenizer (chat models
    often end a turn with a token listed only in `generation_config.json`)."""
    ids = _as_list(cfg.eos_token_id)
    gen_cfg = pathlib.Path(assets_dir) / "generation_config.json" if assets_dir else None
    if gen_cfg is not None and gen_cfg.is_file():
        try:
            ids += _as_list(json.loads(gen_cfg.read_text()).get("eos_token_id"))
        except (json.JSONDecodeError, TypeError, ValueError):
            raise SynthflawError(f"{gen_cfg}: not valid JSON with an integer or list eos_token_id") from None
    if tokenizer is not None:
        ids += _as_list(tokenizer.eos_token_id)
    return sorted(set(ids))


def encode_prompts(tokenizer, prompts: Sequence[str], chat_template: bool = True) -> list[list[int]]:
    """Token ids of each prompt: as a user turn of the chat template when the tokenizer has one
    (and `chat_template`), otherwise the plain text with the tokenizer's special tokens (BOS)."""
    use_template = chat_template and getattr(tokenizer, "chat_template", None)
    encoded = []
    for p in prompts:
        if use_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(p)["input_ids"]
        if not ids:
            raise SynthflawError(f"prompt {len(encoded) + 1} is empty after tokenization "
                                 "(and the tokenizer adds no BOS)")
        encoded.append(list(ids))
    return encoded


def bucket_length(n: int, minimum: int = 16) -> int:
    """The next power of two >= n (at least `minimum`): few distinct shapes, few recompiles."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def left_pad(rows: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, mask) [len(rows), length] with each row right-aligned."""
    ids = np.full((len(rows), length), pad_id, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, length - len(r):] = r
            mask[i, length - len(r):] = 1
    return ids, mask


def cut_at_stop(ids: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    """Tokens before the first stop token."""
    stop = set(int(s) for s in stop_ids)
    out = []
    for t in ids:
        if int(t) in stop:
            break
        out.append(int(t))
    return out


_LENGTH_WARNED: set[tuple[int, int]] = set()


def _warn_too_long_once(longest: int, max_new_tokens: int, max_positions: int) -> None:
    """Warn that prompts + new tokens pass the model's positions, once per (limit, max_new_tokens)
    in a process: callers that generate in many small calls would otherwise repeat it."""
    if longest + max_new_tokens <= max_positions or (max_positions, max_new_tokens) in _LENGTH_WARNED:
        return
    _LENGTH_WARNED.add((max_positions, max_new_tokens))
    log.warning("prompt (%d tokens) + max_new_tokens (%d) exceeds max_position_embeddings %d "
                "(said once; later prompts may pass it too)", longest, max_new_tokens, max_positions)


def generate_text(model: Any, prompts: Sequence[str], max_new_tokens: int = 256, *, temperature: float = 0.0,
                  top_k: int = 0, top_p: float = 1.0, seed: int = 0, chat_template: bool = True,
                  batch_size: int = 8, stop_token_ids_extra: Sequence[int] = (),
                  progress: bool | str = False) -> list[str]:
    """One completion per prompt from a `LoadedModel` (greedy unless temperature > 0).

    Prompts are sorted by length and cut into batches of `batch_size` (the last one is
    filled up with copies so every batch has one shape); batch b samples with
    `fold_in(key(seed), b)`. Responses are decoded up to the first stop token, special
    tokens dropped. `progress` (True or a label) shows a bar of prompts done with the
    tokens generated per second so far (first batch's compilation included)."""
    from tqdm.auto import tqdm

    prompts = list(prompts)
    if not prompts:
        return []
    if isinstance(prompts[0], bytes) or not all(isinstance(p, str) for p in prompts):
        raise SynthflawError("prompts must be strings")
    if batch_size < 1:
        raise SynthflawError(f"--batch-size must be >= 1, got {batch_size}")
    tok = model.tokenizer
    if tok is None:
        raise SynthflawError(f"{model.path}: the model has no tokenizer files; generation needs one")
    sampling = Sampling(float(temperature), int(top_k), float(top_p))
    cfg = model.config
    stops = stop_token_ids(cfg, tok, model.assets_dir) + [int(s) for s in stop_token_ids_extra]
    pad = tok.pad_token_id if tok.pad_token_id is not None else (stops[0] if stops else 0)
    encoded = encode_prompts(tok, prompts, chat_template)
    _warn_too_long_once(max(len(e) for e in encoded), max_new_tokens, cfg.max_position_embeddings)
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    responses: list[str] = [""] * len(prompts)
    base_key = jax.random.key(seed)
    bar = tqdm(total=len(prompts), desc=progress if isinstance(progress, str) else "generating",
               unit="prompt", disable=not progress)
    t0, new_tokens = time.perf_counter(), 0
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start:start + batch_size]
        rows = [encoded[i] for i in idx]
        rows += [rows[0]] * (batch_size - len(rows))
        ids, mask = left_pad(rows, bucket_length(max(len(r) for r in rows)), pad)
        new = generate_ids(cfg, model.params, ids, mask, max_new_tokens=max_new_tokens, sampling=sampling,
                           key=jax.random.fold_in(base_key, b), stop_ids=stops, pad_id=pad, mesh=model.mesh)
        for row, i in enumerate(idx):
            kept = cut_at_stop(new[row], stops)
            new_tokens += min(len(kept) + 1, max_new_tokens)  # + the stop token, when there was one
            responses[i] = tok.decode(kept, skip_special_tokens=True)
        log.debug("generated %d/%d", min(start + batch_size, len(order)), len(order))
        bar.update(len(idx))
        bar.set_postfix(tok_s=f"{new_tokens / max(time.perf_counter() - t0, 1e-9):,.0f}", refresh=False)
    bar.close()
    return responses
