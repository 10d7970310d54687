"""One policy forward per step: forget and replay rows go through the model together,
with the same losses and gradients as one call per stream, and half the weight gathers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthflaw_jax import row_groups, train
from synthflaw_jax.models import llama, presets
from synthflaw_jax.planning import hlo
from synthflaw_jax.sharding import make_mesh

from tests.helpers import products_outside_the_fast_kernel
from tests.test_train import _fake_batch, small_config

MODEL = presets.tiny(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2)
# the paper's step: bounded forgetting + replay + a KL bias term on the replay rows
FULL = {"method": "lower_bounded", "bias_weight": 0.5}


def _step(mesh, loss_cfg, one_forward, forget_len=16, replay_len=16):
    c = small_config()
    c.loss.update(loss_cfg)
    schedule = train.make_schedule(c.optim, 10)
    tx = train.make_optimizer(c.optim, schedule)
    shardings = train.state_shardings(MODEL, tx, mesh)
    params = llama.init_params(MODEL, jax.random.key(0), mesh)
    needs = train.reference_needs(c.loss)
    ref = jax.tree.map(lambda p: p * 0.9, params) if needs.any else None
    state = train.create_state(params, tx, shardings, 0)
    step = train.make_train_step(MODEL, c.loss, tx, schedule, mesh, shardings, one_forward=one_forward)
    batch = {"forget": _fake_batch(8, forget_len, 128, 1), "replay": _fake_batch(8, replay_len, 128, 2)}
    return step, state, batch, ref


@pytest.mark.parametrize("loss_cfg, mesh_shape", [(FULL, (2, 4, 1)), (FULL, (1, 1, 1)),
                                                   ({"method": "npo"}, (1, 1, 1)), ({"method": "graddiff"}, (1, 8, 1))])
def test_same_losses_and_updates_as_one_forward_per_stream(loss_cfg, mesh_shape):
    devices = jax.devices()[: int(np.prod(mesh_shape))]
    results = []
    for one_forward in (False, True):
        step, state, batch, ref = _step(make_mesh(*mesh_shape, devices=devices), loss_cfg, one_forward)
        new_state, metrics = step(state, batch, ref)
        results.append((jax.device_get(metrics), jax.device_get(new_state.params)))
    (m_two, p_two), (m_one, p_one) = results
    assert set(m_two) == set(m_one)
    for key in m_two:
        np.testing.assert_allclose(m_one[key], m_two[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for a, b in zip(jax.tree.leaves(p_one), jax.tree.leaves(p_two)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_streams_of_different_lengths_are_padded_and_cut_back():
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    results = []
    for one_forward in (False, True):
        step, state, batch, ref = _step(mesh, FULL, one_forward, forget_len=12, replay_len=20)
        _, metrics = step(state, batch, ref)
        results.append(jax.device_get(metrics))
    for key in results[0]:
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_join_keeps_each_devices_rows_on_that_device():
    """Joined shard by shard: device d's slice of the joined batch is its own forget rows
    followed by its own replay rows, and split undoes the join."""
    forget = {k: np.arange(8 * 3).reshape(8, 3) + 100 for k in row_groups.MODEL_INPUTS}
    replay = {k: np.arange(4 * 3).reshape(4, 3) + 500 for k in row_groups.MODEL_INPUTS}
    joined = np.asarray(row_groups.join([forget, replay], shards=4)["input_ids"])
    for d in range(4):
        local = joined[d * 3:(d + 1) * 3]
        np.testing.assert_array_equal(local, np.concatenate([forget["input_ids"][2 * d:2 * d + 2],
                                                             replay["input_ids"][d:d + 1]]))
    back = row_groups.split(jnp.asarray(joined), [forget, replay], shards=4)
    np.testing.assert_array_equal(back[0], forget["input_ids"])
    np.testing.assert_array_equal(back[1], replay["input_ids"])


def _gathered_bytes(loss_cfg, one_forward):
    step, state, batch, ref = _step(make_mesh(1, 8, 1), loss_cfg, one_forward)
    text = step.lower(state, batch, ref).compile().as_text()
    stats = hlo.analyze(text, 8)
    return stats.collective_bytes.get("all-gather", 0.0), stats.total_collective_bytes


@pytest.mark.parametrize("loss_cfg", [
    {"method": "graddiff"},  # policy only: forward and backward of each stream
    {**FULL, "bias_on_forget_prompt": True},  # + the reference on both streams
])
def test_fsdp_gathers_weights_half_as_often(loss_cfg):
    """On an 8-way FSDP mesh the compiled step's all-gather traffic (the weights, gathered
    per forward and per backward) halves, and no other collective grows to make up for it."""
    two_gather, two_total = _gathered_bytes(loss_cfg, one_forward=False)
    one_gather, one_total = _gathered_bytes(loss_cfg, one_forward=True)
    assert two_gather > 0
    assert one_gather <= 0.52 * two_gather, (one_gather, two_gather)
    assert one_total - one_gather <= two_total - two_gather


def test_every_product_of_the_cpu_step_goes_to_the_fast_matmul_kernel():
    """The paper's step with the KL on forget prompts too (policy and reference, forward and
    backward, LM head and attention) leaves XLA:CPU no product for its slow fallback."""
    step, state, batch, ref = _step(make_mesh(1, 1, 1, devices=jax.devices()[:1]),
                                    {**FULL, "bias_on_forget_prompt": True}, one_forward=True)
    bare, total = products_outside_the_fast_kernel(step.lower(state, batch, ref).compile().as_text())
    assert total >= 20, total
    assert not bare, f"{len(bare)} of {total} products run outside the fast kernel: {bare[:3]}"
