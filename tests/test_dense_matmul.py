"""The projections' matmul and the tied LM head's: autodiff's gradients exactly, and on CPU a
weight gradient whose x^T is a copy of its own (the transposed-operand dot ran at half speed on
XLA:CPU)."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synthflaw_jax.models import llama


def _operands():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((64, 24)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((24, 40)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((64, 40)), jnp.float32)
    return x, w, g


def test_gradients_are_autodiffs():
    x, w, g = _operands()
    for fn in (lambda x, w: jnp.sum(llama.matmul(x, w) * g), lambda x, w: jnp.sum(jnp.tanh(llama.matmul(x, w)))):
        ours = jax.grad(fn, argnums=(0, 1))(x, w)
        reference = jax.grad(lambda x, w: _as_plain(fn, x, w), argnums=(0, 1))(x, w)
        for a, b in zip(ours, reference):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    # hand-computed for a linear loss: d/dx = g w^T, d/dw = x^T g
    dx, dw = jax.grad(lambda x, w: jnp.sum(llama.matmul(x, w) * g), argnums=(0, 1))(x, w)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(g) @ np.asarray(w).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(dw), np.asarray(x).T @ np.asarray(g), rtol=1e-5, atol=1e-5)


def _as_plain(fn, x, w):
    """`fn` with `llama.matmul` replaced by the plain product (autodiff's own gradients)."""
    original = llama.matmul
    llama.matmul = lambda a, b: a @ b
    try:
        return fn(x, w)
    finally:
        llama.matmul = original


def test_dense_layers_route_their_2d_product_through_matmul():
    x, w, _ = _operands()
    dims = (((1,), (0,)), ((), ()))
    np.testing.assert_array_equal(np.asarray(llama._dense_dot_general(x, w, dims)), np.asarray(x @ w))
    batched = jnp.ones((2, 64, 24))  # not the 2-D case: plain dot_general
    assert llama._dense_dot_general(batched, w, (((2,), (0,)), ((), ()))).shape == (2, 64, 40)


def test_weight_gradient_dot_takes_an_untransposed_lhs_on_cpu():
    x, w, g = _operands()
    grad_w = jax.jit(jax.grad(lambda w: jnp.sum(llama.matmul(x, w) * g)))
    hlo = grad_w.lower(w).compile().as_text()
    dots = re.findall(r"dot\([^)]*\), lhs_contracting_dims=\{(\d+)\}", hlo)
    assert dots, hlo[-2000:]
    if jax.default_backend() == "cpu":
        assert "0" not in dots, f"a dot contracts the lhs's leading (token) axis: {dots}"


def test_tied_head_gradients_are_autodiffs_and_take_an_untransposed_lhs_on_cpu():
    x, _, _ = _operands()
    table = jnp.asarray(np.random.default_rng(1).standard_normal((40, 24)), jnp.float32)  # [vocab, features]
    g = jnp.asarray(np.random.default_rng(2).standard_normal((64, 40)), jnp.float32)

    def loss(x, e):
        return jnp.sum(jnp.tanh(llama.matmul_transposed(x, e)) * g)

    ours = jax.grad(loss, argnums=(0, 1))(x, table)
    reference = jax.grad(lambda x, e: jnp.sum(jnp.tanh(x @ e.T) * g), argnums=(0, 1))(x, table)
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    # hand-computed for a linear loss: d/dx = g E, d/dE = g^T x
    dx, de = jax.grad(lambda x, e: jnp.sum(llama.matmul_transposed(x, e) * g), argnums=(0, 1))(x, table)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(g) @ np.asarray(table), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(de), np.asarray(g).T @ np.asarray(x), rtol=1e-5, atol=1e-5)

    hlo = jax.jit(jax.grad(lambda e: loss(x, e))).lower(table).compile().as_text()
    dots = re.findall(r"dot\([^)]*\), lhs_contracting_dims=\{(\d+)\}", hlo)
    assert dots, hlo[-2000:]
    if jax.default_backend() == "cpu":
        assert "0" not in dots, f"a dot contracts the lhs's leading (token) axis: {dots}"


def test_tied_embedding_keeps_nn_embeds_parameter_and_lookup():
    ids = jnp.asarray([[3, 1, 4], [1, 5, 9]])
    plain, tied = nn.Embed(12, 6), llama.TiedEmbed(12, 6)
    params = plain.init(jax.random.key(0), ids)
    assert jax.tree.structure(tied.init(jax.random.key(0), ids)) == jax.tree.structure(params)
    np.testing.assert_array_equal(np.asarray(tied.apply(params, ids)), np.asarray(plain.apply(params, ids)))
    query = jnp.asarray(np.random.default_rng(3).standard_normal((5, 6)), jnp.float32)
    np.testing.assert_allclose(np.asarray(tied.apply(params, query, method="attend")),
                               np.asarray(plain.apply(params, query, method="attend")), rtol=1e-6, atol=1e-6)
