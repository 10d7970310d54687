"""The engine computes exactly its objective: gradient accumulation is the full-batch
objective, packed rows never hold more examples than the loss keeps, and masked positions
cannot poison gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthflaw_jax import losses, train, unlearn
from synthflaw_jax.data import packing
from synthflaw_jax.data.formats import Example
from synthflaw_jax.models import llama, presets
from synthflaw_jax.sharding import make_mesh

VOCAB, SEQ, ROWS = 128, 16, 8


def _uneven_batch(seed, packed):
    """Rows with different prompt lengths; rows 0-1 have no target at all (a microbatch of
    grad_accum=4 without any valid forget example), packed rows hold 1-3 segments."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, (ROWS, SEQ)).astype(np.int32)
    mask = np.zeros((ROWS, SEQ), np.int32)
    seg = np.ones((ROWS, SEQ), np.int32)
    pos = np.broadcast_to(np.arange(SEQ, dtype=np.int32), (ROWS, SEQ)).copy()
    for r in range(2, ROWS):
        start = int(rng.integers(1, SEQ - 2))
        mask[r, start:] = 1
        if packed and r % 3 == 0:  # three examples in the row
            seg[r, 5:10], seg[r, 10:] = 2, 3
            pos[r, 5:10], pos[r, 10:] = np.arange(5), np.arange(SEQ - 10)
            mask[r, [5, 10]] = 0
        end = int(rng.integers(SEQ - 3, SEQ + 1))
        seg[r, end:] = 0  # padding
        mask[r, end:] = 0
    return {"input_ids": ids, "loss_mask": mask, "segment_ids": seg, "positions": pos}


def _train(loss_cfg, grad_accum, steps=3, max_segments=None):
    mesh = make_mesh(1, 1, 1, devices=jax.devices()[:1])
    cfg = presets.tiny(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2)
    c = unlearn.default_config()
    c.optim.learning_rate, c.optim.warmup_steps, c.optim.weight_decay = 1e-3, 1, 0.01
    c.loss.update(loss_cfg)
    schedule = train.make_schedule(c.optim, 10)
    tx = train.make_optimizer(c.optim, schedule)
    shardings = train.state_shardings(cfg, tx, mesh)
    params = llama.init_params(cfg, jax.random.key(0), mesh)
    ref = jax.tree.map(jnp.copy, params) if train.reference_needs(c.loss).any else None
    state = train.create_state(params, tx, shardings, 0)
    step = train.make_train_step(cfg, c.loss, tx, schedule, mesh, shardings, grad_accum, max_segments)
    history = []
    for i in range(steps):
        batch = {"forget": _uneven_batch(i, packed=max_segments is not None),
                 "replay": _uneven_batch(100 + i, packed=False)}
        state, metrics = step(state, batch, ref)
        history.append(jax.device_get(metrics))
    return jax.device_get(state.params), history


def test_grad_accum_is_the_full_batch_objective():
    # every term at once: bounded forget (per packed example), replay NLL, KL on replay targets
    # and forget prompts; rows 0-1 have no target (a microbatch of 4 without a forget example)
    loss_cfg, max_segments = {"method": "lower_bounded", "bias_on_forget_prompt": True}, 4
    base, base_metrics = _train(loss_cfg, 1, max_segments=max_segments)
    for accum in (2, 4):
        params, metrics = _train(loss_cfg, accum, max_segments=max_segments)
        for key in ("loss", "forget_loss", "replay_loss", "forget_examples", "replay_tokens", "grad_norm"):
            if key in base_metrics[0]:
                for a, b in zip(base_metrics, metrics):
                    np.testing.assert_allclose(b[key], a[key], rtol=2e-5, atol=1e-6, err_msg=f"{key} accum={accum}")
        for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(base), jax.tree.leaves(params)):
            # AdamW divides by sqrt(v): float32 summation order moves weights by ~1e-7, not 1e-3
            np.testing.assert_allclose(y, x, rtol=0, atol=2e-6, err_msg=f"{jax.tree_util.keystr(path)} accum={accum}")


def test_objective_counts_match_the_objective():
    """The counts accumulation divides by are the ones the objective divides by."""
    cfg = {"method": "lower_bounded", "bias_on_forget_prompt": True}
    f, r = _uneven_batch(0, True), _uneven_batch(1, False)
    rng = np.random.default_rng(0)
    logits = lambda: jnp.asarray(rng.normal(size=(ROWS, SEQ, VOCAB)), jnp.float32)  # noqa: E731
    fl, rl = logits(), logits()
    _, metrics = losses.total_loss(cfg, fl, f, rl, r, max_segments=4, forget_ref_logits=fl, replay_ref_logits=rl)
    counts = losses.objective_counts(cfg, f, r, max_segments=4)
    for key, value in counts.items():
        assert float(value) == float(metrics[key]), key
    # a numpy loop: a (row, segment) is valid when one of its tokens is a target predicted
    # from inside the same segment
    valid = {(b, f["segment_ids"][b, t]) for b in range(ROWS) for t in range(1, SEQ)
             if f["loss_mask"][b, t] and f["segment_ids"][b, t] > 0
             and f["segment_ids"][b, t] == f["segment_ids"][b, t - 1]}
    assert float(counts["forget_examples"]) == len(valid)
    assert float(counts["replay_tokens"]) == sum(
        1 for b in range(ROWS) for t in range(1, SEQ)
        if r["loss_mask"][b, t] and r["segment_ids"][b, t] > 0 and r["segment_ids"][b, t] == r["segment_ids"][b, t - 1])


def test_packer_never_puts_more_examples_in_a_row_than_max_segments():
    """21 four-token examples into one 128-token row: with max_segments=16 the row closes at 16
    and the other 5 open the next batch (before, all 21 were packed and 5 silently ignored)."""
    examples = [Example(np.arange(3, 7, dtype=np.int32), np.array([0, 1, 1, 1], np.int32)) for _ in range(21)]
    batch, index, placed = packing.fill_batch(examples.__getitem__, 0, 21, 1, 128, packing=True, max_segments=16)
    assert placed == 16 and index == 16 and batch["segment_ids"].max() == 16
    rest, index, placed = packing.fill_batch(examples.__getitem__, 16, 21, 1, 128, packing=True, max_segments=16)
    assert placed == 5 and index == 21
    # and the loss counts every example the packer placed
    stats = losses.sequence_log_probs(jnp.zeros((1, 128, 8)), batch, max_segments=16)
    assert int(jnp.sum(stats.valid)) == 16
    _, _, unlimited = packing.fill_batch(examples.__getitem__, 0, 21, 1, 128, packing=True)
    assert unlimited == 21


def test_unlearn_forget_stream_respects_max_segments():
    c = unlearn.default_config()
    c.data.seq_len, c.train.max_segments = 512, 2
    from synthflaw_jax.data import pipeline
    limited = next(pipeline.build_mixture(c.data, segment_limits=unlearn._segment_limits(c)))
    free = next(pipeline.build_mixture(c.data))
    assert free["forget"]["segment_ids"].max() > 2  # the forget examples would pack more densely
    assert limited["forget"]["segment_ids"].max() == 2
    np.testing.assert_array_equal(limited["replay"]["segment_ids"], free["replay"]["segment_ids"])  # no limit


def _poisoned(batch, value):
    """Logits that are `value` (inf/NaN) wherever no target is predicted."""
    targets, weights, _ = losses.shift_targets(batch["input_ids"], batch["loss_mask"], batch["segment_ids"])
    used = np.pad(np.asarray(weights) > 0, ((0, 0), (0, 1)))  # logits[:, t] predict target t
    logits = np.random.default_rng(0).normal(size=(ROWS, SEQ, VOCAB)).astype(np.float32)
    logits[~used] = value
    return jnp.asarray(logits), used


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("method", ["lower_bounded", "ga", "npo", "simnpo", "lm"])
def test_masked_positions_cannot_poison_gradients(method, value):
    f, r = _uneven_batch(3, True), _uneven_batch(4, False)
    fl, f_used = _poisoned(f, value)
    rl, r_used = _poisoned(r, value)
    cfg = {"method": method}
    objective = losses.make_objective(cfg, 4)

    def loss(fl, rl):
        return objective(fl, f, rl, r, forget_ref_logits=fl, replay_ref_logits=rl)[0]

    value_, (gf, gr) = jax.value_and_grad(loss, argnums=(0, 1))(fl, rl)
    assert np.isfinite(float(value_))
    assert np.all(np.isfinite(np.asarray(gf))) and np.all(np.isfinite(np.asarray(gr)))
    assert not np.any(np.asarray(gf)[~f_used]) and not np.any(np.asarray(gr)[~r_used])
    # the same loss as with finite values at the masked positions
    clean_f, clean_r = jnp.where(f_used[..., None], fl, 0.0), jnp.where(r_used[..., None], rl, 0.0)
    np.testing.assert_allclose(float(value_), float(loss(clean_f, clean_r)), rtol=1e-6)


def test_nan_in_unused_reference_slots_gives_finite_npo_gradient():
    f = _uneven_batch(5, True)
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(ROWS, SEQ, VOCAB)), jnp.float32)
    valid = np.asarray(losses.sequence_log_probs(logits, f, 4).valid)
    ref = np.where(valid, -20.0, np.nan).astype(np.float32)
    objective = losses.make_objective({"method": "npo", "replay_weight": 0.0}, 4)
    value, grad = jax.value_and_grad(lambda z: objective(z, f, forget_ref_seq_logp=ref)[0])(logits)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
