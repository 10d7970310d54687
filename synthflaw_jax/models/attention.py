"""Attention behind one function with selectable kernels.

- `xla`: plain XLA (CPU/GPU; grouped-query attention without copying K/V): causal
  self-attention without a cache (training, scoring) runs `causal_blocked_attention`, which
  skips the fully masked key blocks; other masks run `jax.nn.dot_product_attention`.
  Decoding steps over a KV cache run `cached_attention` (every kernel): the cache is only
  read, never copied or rewritten inside the layer.
- `reference`: plain einsum + softmax in float32; the readable definition the others must match.
- `pallas_tpu`: the Pallas flash-attention kernel that ships with JAX, TPU only.

Masking is described by `AttentionMask`: segment ids for queries and keys (0 = padding; packed
examples never attend across each other), the sequence index of each query and key (causal),
and an optional sliding window, so the same code serves training and KV-cache decoding.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from synthflaw_jax.errors import SynthflawError


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class AttentionMask:
    """Who may attend to whom: q_segment_ids [B, T], kv_segment_ids [B, S], q_index [T] or [B, T],
    kv_index [S]; `sliding_window` (static) limits how far back a query looks."""

    q_segment_ids: jax.Array
    kv_segment_ids: jax.Array
    q_index: jax.Array
    kv_index: jax.Array
    sliding_window: int | None = dataclasses.field(default=None, metadata=dict(static=True))
    # static promise that q_index == kv_index == arange(T) (self-attention without a cache):
    # key blocks after a query block are then fully masked and the `xla` kernel skips them.
    self_causal: bool = dataclasses.field(default=False, metadata=dict(static=True))

    def dense(self) -> jax.Array:
        """Boolean mask [B, 1, T, S]."""
        q_idx = self.q_index if self.q_index.ndim == 2 else self.q_index[None, :]
        causal = self.kv_index[None, None, :] <= q_idx[:, :, None]
        same = self.q_segment_ids[:, :, None] == self.kv_segment_ids[:, None, :]
        valid = (self.kv_segment_ids != 0)[:, None, :]
        mask = causal & same & valid
        if self.sliding_window:
            mask &= self.kv_index[None, None, :] > q_idx[:, :, None] - self.sliding_window
        return mask[:, None, :, :]


def dot_product_attention(q, k, v, mask: AttentionMask, kernel: str = "xla") -> jax.Array:
    """softmax(q k^T / sqrt(d) + mask) v for q [B, T, H, D], k/v [B, S, K, D], H a multiple of K."""
    if kernel == "xla":
        if mask.self_causal and q.shape[1] == k.shape[1]:
            return causal_blocked_attention(q, k, v, mask)
        return jax.nn.dot_product_attention(q, k, v, mask=mask.dense(), implementation="xla")
    if kernel == "reference":
        return reference_attention(q, k, v, mask)
    if kernel == "pallas_tpu":
        return _pallas_tpu_attention(q, k, v, mask)
    raise SynthflawError(f"unknown attention kernel {kernel!r}")


CAUSAL_BLOCK = 32  # query rows per block in `causal_blocked_attention`
MAX_CAUSAL_BLOCKS = 16  # longer sequences get longer blocks (bounded program size)


def causal_blocked_attention(q, k, v, mask: AttentionMask, block: int | None = None) -> jax.Array:
    """Causal self-attention that skips the fully masked upper-right key blocks.

    Query block [i, i+block) can only see keys [0, i+block) (mask.self_causal promises that
    query t is key t), so each block's scores are computed against that prefix only: about
    (n+1)/2n of the work of the dense kernel for n blocks. Scores in float32, masked with the
    dense mask; GQA without copying K/V (the G query heads of a KV head are one row block).
    The backward is flash-attention style (`_blocked_core`): only q, k, v, the output and the
    row log-sum-exp are kept, and each block's probabilities are recomputed, so no [T, S]
    array outlives the forward. Rows with no allowed key (padding queries) get what the dense
    kernel gives them, the uniform average of all values.
    """
    b, t, h, d = q.shape
    block = max(block or CAUSAL_BLOCK, -(-t // MAX_CAUSAL_BLOCKS))
    kv_heads = k.shape[2]
    groups = h // kv_heads
    # [B, K, G, T, D] and [B, K, S, D]: one batch axis pair (b, k) and one contracting axis
    # in every matmul, forward and backward, so XLA needs no transposed copies of [T, S].
    qg = jnp.transpose(q.reshape(b, t, kv_heads, groups, d), (0, 2, 3, 1, 4))
    kt = jnp.transpose(k, (0, 2, 1, 3))
    vt = jnp.transpose(v, (0, 2, 1, 3))
    allowed = mask.dense()  # [B, 1, T, S]
    out = _blocked_core(qg, kt, vt, allowed, block)  # [B, K, G, T, D] float32
    any_allowed = jnp.any(allowed[:, 0], axis=-1)[:, None, None, :, None]
    uniform = jnp.mean(vt.astype(jnp.float32), axis=2)[:, :, None, None, :]  # [B, K, 1, 1, D]
    out = jnp.where(any_allowed, out, uniform)
    return jnp.transpose(out, (0, 3, 1, 2, 4)).reshape(b, t, h, d).astype(q.dtype)


def _block_scores(qg, kt, allowed, start, end):
    """Masked float32 scores of query rows [start, end) against keys [0, end): [B, K, G*n, end]."""
    b, kv_heads, groups, _, d = qg.shape
    rows = (end - start) * groups
    qb = qg[:, :, :, start:end].reshape(b, kv_heads, rows, d)  # rows ordered (g, t)
    s = jnp.einsum("bkqd,bksd->bkqs", qb, kt[:, :, :end], preferred_element_type=jnp.float32)
    s = s * jnp.asarray(1.0 / (d ** 0.5), jnp.float32)
    ok = jnp.broadcast_to(allowed[:, :, None, start:end, :end], (b, 1, groups, end - start, end))
    return jnp.where(ok.reshape(b, 1, rows, end), s, jnp.finfo(jnp.float32).min), qb


def _blocks(t, block):
    return [(start, min(start + block, t)) for start in range(0, t, block)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _blocked_core(qg, kt, vt, allowed, block):
    return _blocked_fwd(qg, kt, vt, allowed, block)[0]


def _blocked_fwd(qg, kt, vt, allowed, block):
    b, kv_heads, groups, t, d = qg.shape
    outs, lses = [], []
    for start, end in _blocks(t, block):
        s, _ = _block_scores(qg, kt, allowed, start, end)
        m = jnp.max(s, axis=-1, keepdims=True)
        p = jnp.exp(s - m)
        denom = jnp.sum(p, axis=-1, keepdims=True)
        o = jnp.einsum("bkqs,bksd->bkqd", p.astype(vt.dtype), vt[:, :, :end], preferred_element_type=jnp.float32)
        outs.append((o / denom).reshape(b, kv_heads, groups, end - start, d))
        lses.append((m + jnp.log(denom)).reshape(b, kv_heads, groups, end - start))
    out = jnp.concatenate(outs, axis=3)
    lse = jnp.concatenate(lses, axis=3)
    return out, (qg, kt, vt, allowed, out, lse)


def _blocked_bwd(block, res, dout):
    qg, kt, vt, allowed, out, lse = res
    b, kv_heads, groups, t, d = qg.shape
    f32 = jnp.float32
    scale = jnp.asarray(1.0 / (d ** 0.5), f32)
    dout = dout.astype(f32)
    delta = jnp.sum(dout * out, axis=-1)  # [B, K, G, T]: sum_d dO * O = sum_s P * dP
    dqs = []
    # dK and dV are accumulated transposed, [B, K, D, S], as (row-block^T [D, rows]) x (P or
    # dS [rows, S]): every product then contracts the last axis of its left operand.
    # Contracting the rows of P directly (P^T dO) is a form XLA:CPU's fast matmul kernel
    # refuses, and its fallback ran those products at a tenth of the speed.
    dk_t = jnp.zeros((b, kv_heads, d, t), f32)
    dv_t = jnp.zeros((b, kv_heads, d, t), f32)
    for start, end in _blocks(t, block):
        rows = (end - start) * groups
        s, qb = _block_scores(qg, kt, allowed, start, end)
        p = jnp.exp(s - lse[:, :, :, start:end].reshape(b, kv_heads, rows, 1))  # softmax, masked -> 0
        do = dout[:, :, :, start:end].reshape(b, kv_heads, rows, d)
        dv_t = dv_t.at[:, :, :, :end].add(jnp.einsum("bkdq,bkqs->bkds", _swap_last_two(do), p))
        dp = jnp.einsum("bkqd,bksd->bkqs", do, vt[:, :, :end], preferred_element_type=f32)
        ds = p * (dp - delta[:, :, :, start:end].reshape(b, kv_heads, rows, 1)) * scale
        dqs.append(jnp.einsum("bkqs,bksd->bkqd", ds, kt[:, :, :end],
                              preferred_element_type=f32).reshape(b, kv_heads, groups, end - start, d))
        dk_t = dk_t.at[:, :, :, :end].add(jnp.einsum("bkdq,bkqs->bkds", _swap_last_two(qb.astype(f32)), ds))
    dq = jnp.concatenate(dqs, axis=3)
    dk, dv = _swap_last_two(dk_t), _swap_last_two(dv_t)
    return dq.astype(qg.dtype), dk.astype(kt.dtype), dv.astype(vt.dtype), None


def _swap_last_two(x):
    """x with its last two axes swapped, as a copy of its own on CPU: XLA would otherwise fold
    the transpose into the product that reads it, or (with one query block) into the product
    that made it, and bring back the form its fast kernel refuses. The copied arrays are
    [rows, D] blocks and dK/dV, small next to the products."""
    if jax.default_backend() != "cpu":
        return jnp.swapaxes(x, -1, -2)
    barrier = jax.lax.optimization_barrier
    return barrier(jnp.swapaxes(barrier(x), -1, -2))


_blocked_core.defvjp(_blocked_fwd, _blocked_bwd)


def cached_attention(q, k, v, k_cache, v_cache, mask_new: AttentionMask, mask_cache: AttentionMask) -> jax.Array:
    """Attention of new tokens over [cache slots] + [the new tokens themselves], one softmax.

    q [B, T, H, D], k/v [B, T, K, D] (the new tokens' keys and values), k_cache [B, K, D, S]
    and v_cache [B, K, S, D] (`llama.init_cache`'s layout; read only: the new K/V are written
    into the cache by the caller, after the layers). `mask_new` [T, T] and `mask_cache` [T, S] say which keys each query sees; the
    caller excludes the cache slots the new tokens will occupy. The scores of both key blocks
    are concatenated and normalised together in float32, so the result is the attention over
    the union of both key sets. The G query heads of a KV head form one row block, and the
    cache is contracted in its stored layout (batch axes B, K leading), so XLA needs no
    transposed copy of it."""
    b, t, h, d = q.shape
    kv_heads = k.shape[2]
    groups = h // kv_heads
    f32 = jnp.float32
    rows = groups * t
    qg = jnp.transpose(q.reshape(b, t, kv_heads, groups, d), (0, 2, 3, 1, 4)).reshape(b, kv_heads, rows, d)
    kn = jnp.transpose(k, (0, 2, 1, 3))  # [B, K, T, D]: small
    vn = jnp.transpose(v, (0, 2, 1, 3))
    scale = jnp.asarray(1.0 / (d ** 0.5), f32)
    s_cache = jnp.einsum("bkqd,bkds->bkqs", qg, k_cache.astype(q.dtype), preferred_element_type=f32) * scale
    s_new = jnp.einsum("bkqd,bktd->bkqt", qg, kn, preferred_element_type=f32) * scale

    def rows_mask(mask):  # [B, 1, T, S'] -> [B, 1, G*T, S'], rows ordered (g, t) like qg
        dense = mask.dense()
        return jnp.broadcast_to(dense[:, :, None], (b, 1, groups) + dense.shape[2:]).reshape(b, 1, rows, -1)

    neg = jnp.finfo(f32).min
    s_cache = jnp.where(rows_mask(mask_cache), s_cache, neg)
    s_new = jnp.where(rows_mask(mask_new), s_new, neg)
    m = jnp.maximum(jnp.max(s_cache, axis=-1, keepdims=True), jnp.max(s_new, axis=-1, keepdims=True))
    p_cache = jnp.exp(s_cache - m)
    p_new = jnp.exp(s_new - m)
    denom = jnp.sum(p_cache, axis=-1, keepdims=True) + jnp.sum(p_new, axis=-1, keepdims=True)
    o = jnp.einsum("bkqs,bksd->bkqd", p_cache.astype(q.dtype), v_cache.astype(q.dtype), preferred_element_type=f32)
    o = o + jnp.einsum("bkqt,bktd->bkqd", p_new.astype(q.dtype), vn, preferred_element_type=f32)
    o = (o / denom).reshape(b, kv_heads, groups, t, d)
    return jnp.transpose(o, (0, 3, 1, 2, 4)).reshape(b, t, h, d).astype(q.dtype)


def reference_attention(q, k, v, mask: AttentionMask) -> jax.Array:
    """Grouped-query attention written out in float32 (the definition the kernels must match)."""
    b, t, h, d = q.shape
    kv_heads = k.shape[2]
    groups = h // kv_heads
    qg = q.reshape(b, t, kv_heads, groups, d).astype(jnp.float32)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k.astype(jnp.float32)) / jnp.sqrt(d).astype(jnp.float32)
    allowed = mask.dense()[:, :, None, :, :]  # [B, 1, 1, T, S]
    scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(jnp.float32))
    return out.reshape(b, t, h, d).astype(q.dtype)


def _pallas_tpu_attention(q, k, v, mask: AttentionMask) -> jax.Array:
    """Thin call into JAX's Pallas TPU flash attention (segment ids + causal)."""
    if jax.default_backend() != "tpu":
        raise SynthflawError(
            f"attention_kernel 'pallas_tpu' needs a TPU backend (this is {jax.default_backend()!r}); "
            "use 'xla'"
        )
    if mask.sliding_window or q.shape[1] != k.shape[1]:
        raise SynthflawError("attention_kernel 'pallas_tpu' supports full causal self-attention only")
    from jax.experimental.pallas.ops.tpu import flash_attention as fa

    groups = q.shape[2] // k.shape[2]
    k = jnp.repeat(k, groups, axis=2)
    v = jnp.repeat(v, groups, axis=2)
    to_bhtd = lambda x: jnp.swapaxes(x, 1, 2)  # noqa: E731
    out = fa.flash_attention(
        to_bhtd(q), to_bhtd(k), to_bhtd(v),
        segment_ids=fa.SegmentIds(q=mask.q_segment_ids, kv=mask.kv_segment_ids),
        causal=True,
        sm_scale=1.0 / (q.shape[-1] ** 0.5),
    )
    return jnp.swapaxes(out, 1, 2)

