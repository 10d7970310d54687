"""Our Flax model gives transformers' logits (float32, 1e-4) for every supported variant."""
import jax
import numpy as np
import pytest

import synthflaw_jax
from synthflaw_jax.sharding import make_mesh
from tests.hf_fixtures import VARIANTS, build_hf_model, hf_logits, padded_batch, save_hf_model

TOL = 1e-4


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def hf_variant(request, tmp_path_factory):
    model = build_hf_model(request.param)
    path = save_hf_model(model, tmp_path_factory.mktemp(request.param))
    ids, mask = padded_batch(model.config.vocab_size)
    return request.param, path, ids, mask, hf_logits(model, ids, mask)


def _max_diff_on_tokens(ours, ref, mask):
    real = mask.astype(bool)
    return float(np.max(np.abs(np.asarray(ours)[real] - ref[real])))


def test_logits_match_transformers(hf_variant):
    name, path, ids, mask, ref = hf_variant
    model = synthflaw_jax.load(path)
    ours = model.logits(ids, mask)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    diff = _max_diff_on_tokens(ours, ref, mask)
    assert diff < TOL, f"{name}: max |ours - transformers| = {diff:.3g}"
    # the comparison is meaningful: logits are far from each other across tokens
    assert np.std(ref[mask.astype(bool)]) > 0.1


def test_logits_match_on_8_device_mesh(hf_variant):
    name, path, ids, mask, ref = hf_variant
    mesh = make_mesh(data=1, fsdp=4, tensor=2)
    model = synthflaw_jax.load(path, mesh=mesh)
    q = model.params["layers"]["self_attn"]["q_proj"]["kernel"]
    assert len(q.sharding.device_set) == 8 and q.sharding.spec[1] == "fsdp" and q.sharding.spec[2] == "tensor"
    diff = _max_diff_on_tokens(model.logits(ids, mask), ref, mask)
    assert diff < TOL, f"{name} sharded: max diff {diff:.3g}"


def test_reference_attention_kernel_matches_xla(hf_variant):
    name, path, ids, mask, ref = hf_variant
    model = synthflaw_jax.load(path, attention_kernel="reference")
    assert _max_diff_on_tokens(model.logits(ids, mask), ref, mask) < TOL


def test_remat_policy_does_not_change_logits_or_grads(tmp_path):
    from synthflaw_jax.models import llama
    from synthflaw_jax.models.config import ModelConfig

    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2)
    params = llama.init_params(cfg, jax.random.key(1))
    ids = jax.random.randint(jax.random.key(2), (2, 10), 0, 64)

    def loss(p, c):
        return llama.forward(c, p, ids).mean()

    base = jax.grad(loss)(params, cfg)
    for policy in ("full", "dots", "dots_no_batch"):
        g = jax.grad(loss)(params, cfg.replace(remat_policy=policy))
        for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(g)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_packed_segments_do_not_attend_across_examples():
    """Two examples packed into one row give the logits each gives alone."""
    from synthflaw_jax.models import llama
    from synthflaw_jax.models.config import ModelConfig

    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    params = llama.init_params(cfg, jax.random.key(0))
    a = np.array([5, 6, 7, 8, 9], np.int32)
    b = np.array([10, 11, 12, 13], np.int32)
    packed = np.concatenate([a, b, [0, 0, 0]])[None]
    seg = np.array([[1] * 5 + [2] * 4 + [0] * 3], np.int32)
    pos = np.array([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 0, 0]], np.int32)
    out = np.asarray(llama.forward(cfg, params, packed, pos, seg))
    alone_a = np.asarray(llama.forward(cfg, params, a[None]))
    alone_b = np.asarray(llama.forward(cfg, params, b[None]))
    np.testing.assert_allclose(out[0, :5], alone_a[0], atol=1e-5)
    np.testing.assert_allclose(out[0, 5:9], alone_b[0], atol=1e-5)


def test_pallas_tpu_kernel_is_refused_off_tpu():
    from synthflaw_jax.errors import SynthflawError
    from synthflaw_jax.models import llama
    from synthflaw_jax.models.config import ModelConfig

    cfg = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, attention_kernel="pallas_tpu")
    params = llama.init_params(cfg.replace(attention_kernel="xla"), jax.random.key(0))
    with pytest.raises(SynthflawError, match="needs a TPU"):
        llama.forward(cfg, params, np.ones((1, 4), np.int32))
