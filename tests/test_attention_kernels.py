"""The `xla` attention kernel's blocked causal path and the SwiGLU custom VJP against plain
definitions: values and gradients, with padding, packed segments, GQA and sliding windows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthflaw_jax.models.attention import AttentionMask, causal_blocked_attention, reference_attention
from synthflaw_jax.models.llama import swiglu

from tests.helpers import products_outside_the_fast_kernel


def _inputs(t=75, heads=4, kv_heads=2, d=8, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.normal(size=(2, t, n, d)), jnp.float32) for n in (heads, kv_heads, kv_heads))
    # row 0: left padding then one example; row 1: three packed examples then right padding
    seg = np.zeros((2, t), np.int32)
    seg[0, 7:] = 1
    seg[1, :20], seg[1, 20:51], seg[1, 51:t - 5] = 1, 2, 3
    return q, k, v, jnp.asarray(seg)


def _mask(seg, window=None):
    index = jnp.arange(seg.shape[1], dtype=jnp.int32)
    return AttentionMask(seg, seg, index, index, window, self_causal=True)


@pytest.mark.parametrize("window", [None, 9])
@pytest.mark.parametrize("block", [16, 32, 128])
def test_blocked_causal_matches_reference_values_and_gradients(window, block):
    q, k, v, seg = _inputs()
    mask = _mask(seg, window)
    valid = (seg != 0)[:, :, None, None]
    weights = jnp.asarray(np.random.default_rng(1).normal(size=q.shape), jnp.float32)

    def objective(fn, q, k, v):
        return jnp.sum(jnp.where(valid, fn(q, k, v, mask) * weights, 0.0))

    ours = causal_blocked_attention(q, k, v, mask, block=block)
    ref = reference_attention(q, k, v, mask)
    np.testing.assert_allclose(np.where(valid, ours, 0), np.where(valid, ref, 0), atol=2e-6)
    # padding rows see no key: both give the uniform average of the values, as jax.nn's kernel does
    dense = jax.nn.dot_product_attention(q, k, v, mask=mask.dense(), implementation="xla")
    np.testing.assert_allclose(ours, dense, atol=2e-6)

    blocked = lambda q, k, v, m: causal_blocked_attention(q, k, v, m, block=block)  # noqa: E731
    g_ours = jax.grad(lambda *a: objective(blocked, *a), argnums=(0, 1, 2))(q, k, v)
    g_ref = jax.grad(lambda *a: objective(reference_attention, *a), argnums=(0, 1, 2))(q, k, v)
    for name, a, b in zip("qkv", g_ours, g_ref):
        np.testing.assert_allclose(a, b, atol=5e-6, err_msg=f"d{name}")


def test_blocked_causal_does_not_leak_across_segments_or_future():
    q, k, v, seg = _inputs()
    mask = _mask(seg)
    base = causal_blocked_attention(q, k, v, mask, block=16)
    # changing keys/values of example 3 in row 1 and of the last tokens must leave example 1/2 alone
    k2 = k.at[1, 51:].add(5.0)
    v2 = v.at[1, 51:].add(5.0)
    moved = causal_blocked_attention(q, k2, v2, mask, block=16)
    np.testing.assert_allclose(moved[1, :51], base[1, :51], atol=1e-6)
    assert not np.allclose(moved[1, 51:70], base[1, 51:70])


def test_blocked_causal_backward_gives_every_product_to_the_fast_matmul_kernel():
    q, k, v, seg = _inputs(t=128, heads=8, kv_heads=4, d=32)
    mask = _mask(seg)
    grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(causal_blocked_attention(q, k, v, mask)), argnums=(0, 1, 2)))
    bare, total = products_outside_the_fast_kernel(grad.lower(q, k, v).compile().as_text())
    assert total, "no product found in the compiled HLO"
    assert not bare, f"{len(bare)} of {total} products run outside the fast kernel: {bare[:3]}"


def test_swiglu_custom_vjp_matches_autodiff():
    rng = np.random.default_rng(0)
    gate, up, g = (jnp.asarray(rng.normal(size=(6, 5)) * 3, jnp.float32) for _ in range(3))
    plain = lambda a, b: jax.nn.silu(a) * b  # noqa: E731
    np.testing.assert_allclose(swiglu(gate, up), plain(gate, up), rtol=1e-6)
    _, vjp_ours = jax.vjp(swiglu, gate, up)
    _, vjp_plain = jax.vjp(plain, gate, up)
    for a, b in zip(vjp_ours(g), vjp_plain(g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
