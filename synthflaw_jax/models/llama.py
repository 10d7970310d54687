"""A Flax (Linen) decoder for the Llama family: Llama 2/3/3.1/3.2, Mistral, Qwen2.

Parameters are laid out so that conversion from transformers is a rename plus a transpose
(kernels are [in, out]; q/k/v kernels [embed, heads, head_dim]), with the layers stacked on
a leading `layers` axis by `nn.scan`. Every parameter carries logical axis names that
`synthflaw_jax.sharding.LOGICAL_RULES` maps to the mesh.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from synthflaw_jax import sharding as shd
from synthflaw_jax.models.attention import AttentionMask, cached_attention, dot_product_attention
from synthflaw_jax.models.config import ModelConfig, llama3_inv_freq_scale

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def _init(axes, std=0.02):
    return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _zeros(axes):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def _flat(x):
    """[..., D] -> [N, D]. Dense layers run on token-flattened activations: the weight
    gradient x^T dy then contracts one axis, which XLA:CPU does without first copying dy
    into a transposed layout (with [B, T, D] it contracts two axes and transposes)."""
    return x.reshape(-1, x.shape[-1])


@jax.custom_vjp
def swiglu(gate, up):
    """silu(gate) * up, with a hand-written backward that recomputes sigmoid(gate) and
    produces both input gradients in one elementwise pass (autodiff keeps silu(gate) and
    sigmoid(gate) as extra [tokens, mlp] residuals and takes three passes)."""
    return nn.silu(gate) * up


def _swiglu_fwd(gate, up):
    return swiglu(gate, up), (gate, up)


def _swiglu_bwd(res, g):
    gate, up = res
    # the barrier keeps XLA from merging this sigmoid with the forward's where both sit in one
    # program region (remat recomputes the forward next to the backward): the merged sigmoid
    # would be stored, and the forward split into three passes
    gate = jax.lax.optimization_barrier(gate)
    sig = jax.nn.sigmoid(gate)
    silu = gate * sig
    return g * up * (sig * (1 + gate * (1 - sig))), g * silu


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


@jax.custom_vjp
def matmul(x, w):
    """[N, in] @ [in, out] whose weight gradient multiplies a materialised x^T (CPU only).

    Autodiff's weight gradient x^T dy contracts the token axis of both operands; XLA:CPU sends
    that transposed-operand form to a slower kernel (the 2048 x 256 x 8192 LM-head gradient ran
    at 77 GFLOP/s, 157 with x^T copied first; PyTorch 133). The copy of x^T is [in, N], small
    next to the matmul. Other backends take the transposed operand as it is."""
    return x @ w


def _matmul_fwd(x, w):
    return x @ w, (x, w)


def _matmul_bwd(res, g):
    x, w = res
    xt = x.T
    if jax.default_backend() == "cpu":
        xt = jax.lax.optimization_barrier(xt)  # keeps the transpose a copy of its own
    return g @ w.T, xt @ g


matmul.defvjp(_matmul_fwd, _matmul_bwd)


@jax.custom_vjp
def matmul_transposed(x, w):
    """[N, in] @ [out, in]^T, the tied LM head (logits against the embedding table), whose
    weight gradient is computed as (x^T dy)^T on CPU.

    Autodiff's gradient dy^T x contracts the token axis of both operands, a form XLA:CPU keeps
    from its fast matmul kernel; x^T dy with a copied x^T is the form it takes, and its
    [in, out] result is transposed once. SmolLM2's head (576 x 49152) at 2048 tokens: forward
    and backward 1.39 s against 1.82 s. Other backends take the transposed operand as it is."""
    return x @ w.T


def _matmul_transposed_fwd(x, w):
    return x @ w.T, (x, w)


def _matmul_transposed_bwd(res, g):
    x, w = res
    dx, dw_t = _matmul_bwd((x, w.T), g)  # x @ w.T is `matmul(x, w.T)`: its x^T dy, transposed
    if jax.default_backend() == "cpu":
        dw_t = jax.lax.optimization_barrier(dw_t)  # or XLA folds the transpose back into the product
    return dx, dw_t.T


matmul_transposed.defvjp(_matmul_transposed_fwd, _matmul_transposed_bwd)


class TiedEmbed(nn.Embed):
    """`nn.Embed` (same parameter, same lookup) whose `attend` runs `matmul_transposed`."""

    def attend(self, query):
        """Logits of `query` [N, features] against every embedding: [N, num_embeddings]."""
        query, embedding = self.promote_dtype(query, self.embedding, dtype=self.dtype)
        return matmul_transposed(query, embedding)


def _dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """`nn.Dense`'s dot_general, through `matmul` for the 2-D [N, in] x [in, out] case."""
    (lhs_contract, rhs_contract), batch_dims = dimension_numbers
    if (lhs.ndim, rhs.ndim, tuple(lhs_contract), tuple(rhs_contract)) == (2, 2, (1,), (0,)) \
            and batch_dims == ((), ()) and precision is None and preferred_element_type is None:
        return matmul(lhs, rhs)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)


class HeadsDense(nn.Module):
    """`nn.DenseGeneral`'s parameters and initialisation (kernel [*in, *features], bias
    [*features]) over the input's last `n_in` axes, computed as one 2-D matmul
    [tokens, prod(in)] x [prod(in), prod(features)]: with a single contracting and a single
    output axis XLA:CPU runs the weight gradient without copying the activation gradient
    into a transposed layout first. Input [N, *in] -> output [N, *features]."""

    features: tuple[int, ...]
    n_in: int
    use_bias: bool
    dtype: Any
    param_dtype: Any
    kernel_init: Any
    bias_init: Any

    @nn.compact
    def __call__(self, x):
        in_shape = x.shape[x.ndim - self.n_in:]
        n_in, n_out = int(np.prod(in_shape)), int(np.prod(self.features))

        def flat_init(init, flat_shape):
            def wrapped(rng, shape, dtype=jnp.float32):  # as nn.DenseGeneral: init flat, then reshape
                value = init(rng, flat_shape, dtype)
                if isinstance(value, nn.meta.AxisMetadata):
                    return nn.meta.replace_boxed(value, jnp.reshape(value.unbox(), shape))
                return jnp.reshape(value, shape)
            return wrapped

        kernel = self.param("kernel", flat_init(self.kernel_init, (n_in, n_out)), in_shape + self.features,
                            self.param_dtype)
        bias = self.param("bias", flat_init(self.bias_init, (n_out,)), self.features, self.param_dtype) \
            if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        out = matmul(x.reshape(-1, n_in), kernel.reshape(n_in, n_out))
        if bias is not None:
            out = out + bias.reshape(n_out)
        return out.reshape(x.shape[: x.ndim - self.n_in] + self.features)


def constrain(x, axes, mesh: Mesh | None):
    """Pin an activation's sharding by logical axis names (a no-op without a mesh)."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, shd.logical_to_sharding(axes, x.shape, mesh))


def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """Inverse rotary frequencies [head_dim/2] in float32, with the config's rope scaling."""
    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))
    if cfg.rope_type == "linear":
        inv_freq = inv_freq / cfg.rope_factor
    elif cfg.rope_type == "llama3":
        inv_freq = llama3_inv_freq_scale(cfg, inv_freq)
    return inv_freq.astype(np.float32)


def apply_rope(x, positions, inv_freq):
    """Rotate x [B, T, H, D] by positions [B, T] in the HF layout (halves, not interleaved)."""
    freqs = positions.astype(jnp.float32)[:, :, None] * jnp.asarray(inv_freq)[None, None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    cos = jnp.cos(emb)[:, :, None, :].astype(x.dtype)
    sin = jnp.sin(emb)[:, :, None, :].astype(x.dtype)
    half = x.shape[-1] // 2
    # rotate_half(x) * sin = [-x2, x1] * [s, s] = [x2, x1] * [-s, s]; the half swap is a
    # reverse of a [2, half] view, which (unlike slices + concatenate) fuses in both passes.
    swapped = jnp.flip(x.reshape(x.shape[:-1] + (2, half)), axis=-2).reshape(x.shape)
    signed_sin = jnp.concatenate([-sin[..., :half], sin[..., half:]], axis=-1)
    return x * cos + swapped * signed_sin


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 like transformers."""

    eps: float
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x):
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
            (x.shape[-1],), self.param_dtype,
        )
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale.astype(self.dtype) * normed.astype(self.dtype)


class Attention(nn.Module):
    """Grouped-query self-attention with rotary embeddings and an optional KV cache."""

    cfg: ModelConfig
    mesh: Mesh | None = None

    @nn.compact
    def __call__(self, x, positions, mask: AttentionMask, layer_cache=None, cache_index=None):
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        qkv_bias = cfg.attention_bias or cfg.qkv_bias

        batch, length = x.shape[:2]
        tokens = _flat(x)  # [B*T, D]: the matmuls' weight gradients then contract one axis

        def proj(name, heads, axes):
            return HeadsDense(
                (heads, cfg.head_dim), 1, use_bias=qkv_bias, dtype=dtype, param_dtype=pdtype,
                kernel_init=_init(("embed", axes, "head_dim")), bias_init=_zeros((axes, "head_dim")),
                name=name,
            )(tokens).reshape(batch, length, heads, cfg.head_dim)

        q = proj("q_proj", cfg.num_attention_heads, "heads")
        k = proj("k_proj", cfg.num_key_value_heads, "kv_heads")
        v = proj("v_proj", cfg.num_key_value_heads, "kv_heads")
        inv_freq = rope_inv_freq(cfg)
        q = apply_rope(q, positions, inv_freq)
        k = apply_rope(k, positions, inv_freq)
        q = constrain(q, ("batch", "length", "act_heads", "head_dim"), self.mesh)

        new_kv = None
        if layer_cache is not None:
            # The new tokens' K [B, K, D, T] and V [B, K, T, D] in the cache's dtype and layout;
            # the caller writes them into the cache after the layer (one in-place update, the cache
            # is only read here).
            k, v = k.astype(layer_cache["k"].dtype), v.astype(layer_cache["v"].dtype)
            new_kv = {"k": jnp.transpose(k, (0, 2, 3, 1)), "v": jnp.transpose(v, (0, 2, 1, 3))}
            k, v = k.astype(dtype), v.astype(dtype)  # attend with the values the cache keeps

        if layer_cache is None or isinstance(mask, AttentionMask):
            # no cache, or a prefill at slot 0 (the cache holds nothing yet): self-attention
            out = dot_product_attention(q, k, v, mask, kernel=cfg.attention_kernel)
        else:
            mask_new, mask_cache = mask
            out = cached_attention(q, k, v, layer_cache["k"], layer_cache["v"], mask_new, mask_cache)
        out = HeadsDense(
            (cfg.hidden_size,), 2, use_bias=cfg.attention_bias, dtype=dtype, param_dtype=pdtype,
            kernel_init=_init(("heads", "head_dim", "embed")), bias_init=_zeros(("embed",)),
            name="o_proj",
        )(out.reshape((batch * length,) + out.shape[2:]))
        return out.reshape(batch, length, cfg.hidden_size), new_kv


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    cfg: ModelConfig
    mesh: Mesh | None = None

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)

        def dense(name, features, axes):
            return nn.Dense(
                features, use_bias=cfg.mlp_bias, dtype=dtype, param_dtype=pdtype,
                kernel_init=_init(axes), bias_init=_zeros(axes[1:]), name=name,
                dot_general=_dense_dot_general,
            )

        tokens = _flat(x)  # [B*T, D]: the matmuls' weight gradients then contract one axis
        gate = dense("gate_proj", cfg.intermediate_size, ("embed", "mlp"))(tokens)
        up = dense("up_proj", cfg.intermediate_size, ("embed", "mlp"))(tokens)
        hidden = swiglu(gate, up).reshape(x.shape[:-1] + (cfg.intermediate_size,))
        hidden = constrain(hidden, ("batch", "length", "act_mlp"), self.mesh)
        out = dense("down_proj", cfg.hidden_size, ("mlp", "embed"))(_flat(hidden))
        return out.reshape(x.shape[:-1] + (cfg.hidden_size,))


class DecoderLayer(nn.Module):
    """Pre-norm attention block and SwiGLU block with residuals; one step of the layer scan."""

    cfg: ModelConfig
    mesh: Mesh | None = None

    @nn.compact
    def __call__(self, x, layer_cache, positions, mask, cache_index):
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        x = constrain(x, ("batch", "length", "act_embed"), self.mesh)
        h = RMSNorm(cfg.rms_norm_eps, dtype, pdtype, name="input_layernorm")(x)
        h, new_kv = Attention(cfg, self.mesh, name="self_attn")(h, positions, mask, layer_cache, cache_index)
        x = x + h
        h = RMSNorm(cfg.rms_norm_eps, dtype, pdtype, name="post_attention_layernorm")(x)
        x = x + MLP(cfg, self.mesh, name="mlp")(h)
        return x, new_kv


class CausalLM(nn.Module):
    """Embedding, scanned decoder layers, final norm and LM head; logits in float32.

    `__call__(input_ids, positions, segment_ids, cache=None, cache_index=None)` returns
    `(logits [B, T, V] float32, hidden [B, T, D], new_cache)`. Without a cache the model
    attends causally within segments; with one (`init_cache`) the T new tokens take slots
    [cache_index, cache_index + T) and attend over the slots before them and causally among
    themselves, with the per-slot segment ids of `cache["segment_ids"]` (0 = padding).

    The stacked cache is only read inside the layer scan; each layer returns its new K/V and
    they are written into the cache with one `dynamic_update_slice` after the scan. A Python
    int `cache_index` of 0 (a prefill) skips reading the empty cache. The scan still slices
    each layer's weights and cache out of the stacked arrays, so a decode loop runs
    `decode_step` instead.
    """

    cfg: ModelConfig
    mesh: Mesh | None = None

    @nn.compact
    def __call__(self, input_ids, positions=None, segment_ids=None, cache=None, cache_index=None):
        cfg = self.cfg
        dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
        batch, length = input_ids.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
        if segment_ids is None:
            segment_ids = jnp.ones((batch, length), jnp.int32)

        if cache is None:
            index = jnp.arange(length, dtype=jnp.int32)
            mask = AttentionMask(segment_ids, segment_ids, index, index, cfg.sliding_window, self_causal=True)
            layer_caches = None
        else:
            mask = cache_masks(cfg, segment_ids, cache["segment_ids"], cache_index)
            layer_caches = {"k": cache["k"], "v": cache["v"]}

        embed = TiedEmbed(
            cfg.vocab_size, cfg.hidden_size, dtype=dtype, param_dtype=pdtype,
            embedding_init=_init(("vocab", "embed")), name="embed_tokens",
        )
        x = embed(input_ids.astype(jnp.int32))

        layer_cls = DecoderLayer
        if cfg.remat_policy != "none":
            layer_cls = nn.remat(layer_cls, policy=_REMAT_POLICIES[cfg.remat_policy], prevent_cse=False)
        scanned = nn.scan(
            layer_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast),
            length=cfg.num_hidden_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        x, new_layer_caches = scanned(cfg, self.mesh, name="layers")(
            x, layer_caches, positions, mask, cache_index
        )
        hidden = RMSNorm(cfg.rms_norm_eps, dtype, pdtype, name="norm")(x)
        if cfg.tie_word_embeddings:
            logits = embed.attend(_flat(hidden))
        else:
            logits = nn.Dense(
                cfg.vocab_size, use_bias=False, dtype=dtype, param_dtype=pdtype,
                kernel_init=_init(("embed", "vocab")), name="lm_head", dot_general=_dense_dot_general,
            )(_flat(hidden))
        logits = logits.reshape(batch, length, cfg.vocab_size)
        logits = constrain(logits.astype(jnp.float32), ("batch", "length", "act_vocab"), self.mesh)
        new_cache = None
        if cache is not None:
            new_cache = {name: write_cache(cache[name], new_layer_caches[name], cache_index, name)
                         for name in ("k", "v")}
            new_cache["segment_ids"] = cache["segment_ids"]
        return logits, hidden, new_cache


def cache_masks(cfg: ModelConfig, segment_ids, cache_segments, cache_index):
    """Masks of T new tokens taking cache slots [cache_index, cache_index + T).

    A Python int `cache_index` of 0 (a prefill: the cache holds nothing yet) gives one
    causal self-attention `AttentionMask`; otherwise a pair (mask over the new tokens, mask
    over the cache) for `cached_attention`, where the slots from cache_index on, not written
    yet, get segment 0 (hidden) and the new tokens' own keys come from the first block."""
    length = segment_ids.shape[1]
    q_index = cache_index + jnp.arange(length, dtype=jnp.int32)
    new_segments = jax.lax.dynamic_slice_in_dim(cache_segments, cache_index, length, axis=1)
    if isinstance(cache_index, int) and cache_index == 0:
        return AttentionMask(segment_ids, new_segments, q_index, q_index, cfg.sliding_window, self_causal=True)
    kv_index = jnp.arange(cache_segments.shape[1], dtype=jnp.int32)
    before = jnp.where(kv_index[None, :] < cache_index, cache_segments, 0)
    return (AttentionMask(segment_ids, new_segments, q_index, q_index, cfg.sliding_window),
            AttentionMask(segment_ids, before, q_index, kv_index, cfg.sliding_window))


def split_layers(params) -> list:
    """The stacked layer params as one tree per layer (for `decode_step`)."""
    layers = jax.tree.leaves(params["layers"])[0].shape[0]
    return [jax.tree.map(lambda a, i=i: a[i], params["layers"]) for i in range(layers)]


def split_cache(cache) -> dict:
    """A stacked cache (`init_cache`) as per-layer arrays:
    {"layers": [{"k": [B, K, D, S], "v": [B, K, S, D]} per layer], "segment_ids": [B, S]}."""
    layers = [{"k": cache["k"][i], "v": cache["v"][i]} for i in range(cache["k"].shape[0])]
    return {"layers": layers, "segment_ids": cache["segment_ids"]}


def decode_step(cfg: ModelConfig, params, layer_params, input_ids, positions, segment_ids, cache, cache_index,
                mesh: Mesh | None = None):
    """`CausalLM` with a KV cache, the layers unrolled over per-layer params and caches.

    `layer_params` is `split_layers(params)` and `cache` a `split_cache` one. Returns
    (logits [B, T, V] float32, new cache). Inside a decode loop this is what makes a step
    cost only its reads: a layer scan slices (copies) every layer's weights and cache out of
    the stacked arrays each step, while per-layer arrays carried by the loop are read where
    they lie and each new K/V is written in place."""
    dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    batch, length = input_ids.shape
    mask = cache_masks(cfg, segment_ids, cache["segment_ids"], cache_index)
    embed = TiedEmbed(cfg.vocab_size, cfg.hidden_size, dtype=dtype, param_dtype=pdtype)
    x = embed.apply({"params": params["embed_tokens"]}, input_ids.astype(jnp.int32))
    layer = DecoderLayer(cfg, mesh)
    new_layers = []
    for p, c in zip(layer_params, cache["layers"]):
        x, kv = layer.apply({"params": p}, x, c, positions, mask, cache_index)
        new_layers.append({name: write_cache(c[name], kv[name], cache_index, name) for name in ("k", "v")})
    hidden = RMSNorm(cfg.rms_norm_eps, dtype, pdtype).apply({"params": params["norm"]}, x)
    if cfg.tie_word_embeddings:
        logits = embed.apply({"params": params["embed_tokens"]}, _flat(hidden), method="attend")
    else:
        logits = nn.Dense(cfg.vocab_size, use_bias=False, dtype=dtype, param_dtype=pdtype).apply(
            {"params": params["lm_head"]}, _flat(hidden))
    logits = logits.reshape(batch, length, cfg.vocab_size)
    logits = constrain(logits.astype(jnp.float32), ("batch", "length", "act_vocab"), mesh)
    return logits, {"layers": new_layers, "segment_ids": cache["segment_ids"]}


# Where the slots lie in a cache array, counted from the end (the same axis in the stacked
# cache and in a layer's). Keys keep slots last, values next to last, so that attention's two
# products over the cache, q K^T and p V, are both plain [rows, inner] x [inner, cols] products
# of each (row, KV head)'s contiguous matrix: XLA:CPU ran q K^T with keys stored [S, head_dim]
# at about half the speed of p V.
CACHE_SLOT_AXIS = {"k": -1, "v": -2}


def write_cache(cache_array, new, cache_index, name: str):
    """`cache_array` (a cache's "k" or "v", stacked or one layer's) with `new` written in place
    at slot `cache_index` onwards; `new` has the same layout and T slots."""
    axis = CACHE_SLOT_AXIS[name] % cache_array.ndim
    return jax.lax.dynamic_update_slice_in_dim(cache_array, new, cache_index, axis=axis)


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None) -> dict[str, jax.Array]:
    """An empty KV cache: k [layers, B, kv_heads, head_dim, S], v [layers, B, kv_heads, S,
    head_dim] and slot segment ids [B, S] (`CACHE_SLOT_AXIS`: where the slots lie).

    Each (layer, row, KV head) is one contiguous matrix, [head_dim, S] of keys and [S, head_dim]
    of values, which attention contracts in place, without a transposed copy."""
    dtype = jnp.dtype(dtype or cfg.dtype)
    lead = (cfg.num_hidden_layers, batch, cfg.num_key_value_heads)
    return {
        "k": jnp.zeros(lead + (cfg.head_dim, length), dtype),
        "v": jnp.zeros(lead + (length, cfg.head_dim), dtype),
        "segment_ids": jnp.zeros((batch, length), jnp.int32),
    }


def _abstract_boxed(cfg: ModelConfig):
    model = CausalLM(cfg)
    ids = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda key: model.init(key, ids), jax.random.key(0))["params"]


def param_logical_axes(cfg: ModelConfig):
    """A pytree like the params whose leaves are tuples of logical axis names."""
    specs = nn.get_partition_spec(_abstract_boxed(cfg))
    return jax.tree.map(lambda s: tuple(s), specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))


def abstract_params(cfg: ModelConfig):
    """ShapeDtypeStructs of the params (no memory touched)."""
    return nn.meta.unbox(_abstract_boxed(cfg))


def param_shardings(cfg: ModelConfig, mesh: Mesh) -> Any:
    """NamedShardings for every parameter, from its logical axes and the rules table."""
    return shd.tree_shardings(param_logical_axes(cfg), abstract_params(cfg), mesh)


def init_params(cfg: ModelConfig, key: jax.Array, mesh: Mesh | None = None):
    """Randomly initialised params, created directly with their shardings when a mesh is given."""
    model = CausalLM(cfg)

    def init(k):
        return nn.meta.unbox(model.init(k, jnp.zeros((1, 1), jnp.int32))["params"])

    if mesh is None:
        return jax.jit(init)(key)
    shardings = param_shardings(cfg, mesh)
    return jax.jit(init, out_shardings=shardings)(key)


def param_count(params) -> int:
    """Number of scalars in a params pytree."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def forward(cfg: ModelConfig, params, input_ids, positions=None, segment_ids=None, mesh=None):
    """Logits [B, T, V] in float32 (pure function of params; jit it at the call site)."""
    logits, _, _ = CausalLM(cfg, mesh).apply({"params": params}, input_ids, positions, segment_ids)
    return logits

