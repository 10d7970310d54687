"""Attention behind one function with selectable kernels.

- `xla`: `jax.nn.dot_product_attention` (CPU/GPU; grouped-query attention without copying K/V).
- `reference`: plain einsum + softmax in float32; the readable definition the others must match.
- `pallas_tpu`: the Pallas flash-attention kernel that ships with JAX, TPU only.

Masking is described by `AttentionMask`: segment ids for queries and keys (0 = padding; packed
examples never attend across each other), the sequence index of each query and key (causal),
and an optional sliding window, so the same code serves training and KV-cache decoding.
"""
from __future__ import annotations

import dataclasses

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
        return jax.nn.dot_product_attention(q, k, v, mask=mask.dense(), implementation="xla")
    if kernel == "reference":
        return reference_attention(q, k, v, mask)
    if kernel == "pallas_tpu":
        return _pallas_tpu_attention(q, k, v, mask)
    raise SynthflawError(f"unknown attention kernel {kernel!r}")


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
