"""Train state, optimizer and the one jitted, sharded unlearning step.

The step is a pure function `(state, batch, ref_params) -> (state, metrics)`, compiled once
with explicit in/out shardings and the state donated. A batch is `{stream: {input_ids,
loss_mask, segment_ids, positions}}` with streams `forget` and `replay` (rows of an optional
`retain` stream join the replay rows). Gradient accumulation scans over microbatches and
computes the full-batch objective: every term's sums are divided by the full batch's counts
(`losses.objective_counts`), not by each microbatch's, and the gradients are summed. A step
whose loss or gradient is not finite leaves the state unchanged and reports `finite = 0`,
so no bad parameters ever reach a checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from synthflaw_jax import forgetting, losses, row_groups
from synthflaw_jax import sharding as shd
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models import llama
from synthflaw_jax.models.config import ModelConfig


@flax.struct.dataclass
class TrainState:
    """Everything a step changes: step counter, params, optimizer state, RNG (raw uint32 key)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def default_optim_config() -> ml_collections.ConfigDict:
    """AdamW with warmup and decay, global-norm clipping."""
    c = ml_collections.ConfigDict()
    c.learning_rate = 1e-4      # peak learning rate
    c.warmup_steps = 10         # linear warmup from 0 to the peak
    c.schedule = "cosine"       # after warmup: "cosine" | "linear" | "constant"
    c.end_lr_ratio = 0.1        # final lr = end_lr_ratio * peak (cosine, linear)
    c.weight_decay = 0.0        # decoupled AdamW weight decay
    c.b1 = 0.9
    c.b2 = 0.95
    c.eps = 1e-8
    c.grad_clip = 1.0           # clip by global norm; 0 = off
    return c


def _finite(cfg, key: str) -> float:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SynthflawError(f"config: optim.{key} must be a finite number, got {value!r}")
    return float(value)


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule (optax) for `total_steps` optimizer steps."""
    peak, warmup = _finite(cfg, "learning_rate"), int(cfg.warmup_steps)
    if peak <= 0:
        raise SynthflawError(f"config: optim.learning_rate must be > 0, got {peak}")
    if warmup < 0:
        raise SynthflawError(f"config: optim.warmup_steps must be >= 0, got {warmup}")
    end = peak * float(cfg.end_lr_ratio)
    decay_steps = max(total_steps - warmup, 1)
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, warmup + decay_steps, end)
    if cfg.schedule == "linear":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak, max(warmup, 1)), optax.linear_schedule(peak, end, decay_steps)],
            [max(warmup, 1)],
        )
    if cfg.schedule == "constant":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak, max(warmup, 1)), optax.constant_schedule(peak)], [max(warmup, 1)]
        )
    raise SynthflawError(f"config: optim.schedule {cfg.schedule!r} is not one of cosine, linear, constant")


def make_optimizer(cfg: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Global-norm clipping followed by AdamW."""
    for key, low, high in (("b1", 0.0, 1.0), ("b2", 0.0, 1.0)):
        value = _finite(cfg, key)
        if not low <= value < high:
            raise SynthflawError(f"config: optim.{key} must be in [{low}, {high}), got {value}")
    for key in ("eps", "weight_decay", "grad_clip", "end_lr_ratio"):
        if _finite(cfg, key) < 0 or (key == "eps" and float(cfg[key]) == 0):
            raise SynthflawError(f"config: optim.{key} must be {'> 0' if key == 'eps' else '>= 0'}, got {cfg[key]}")
    parts = []
    if float(cfg.grad_clip) > 0:
        parts.append(optax.clip_by_global_norm(float(cfg.grad_clip)))
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    return optax.chain(*parts)


@dataclasses.dataclass(frozen=True)
class ReferenceNeeds:
    """Which reference logits the loss needs (so unneeded reference forwards are skipped)."""

    forget: bool
    replay: bool

    @property
    def any(self) -> bool:
        return self.forget or self.replay


def reference_needs(loss_cfg) -> ReferenceNeeds:
    """From the validated loss config: NPO and a reference-relative bound need forget refs;
    the KL/bias term needs replay refs."""
    c = losses.validate_loss_config(loss_cfg)
    bias = c["method"] in ("lower_bounded", "kl") and c["bias_weight"] > 0
    return ReferenceNeeds(
        forget=c["method"] == "npo" or (bias and c["bias_on_forget_prompt"]) or forgetting.needs_forget_reference(c),
        replay=bias,
    )


def state_shardings(model_cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
    """NamedShardings for every leaf of the train state (optimizer moments like their params)."""
    param_sh = llama.param_shardings(model_cfg, mesh)
    abstract_opt = jax.eval_shape(tx.init, llama.abstract_params(model_cfg))
    rep = shd.replicated(mesh)
    opt_sh = optax.tree_map_params(
        tx, lambda _, sh: sh, abstract_opt, param_sh, transform_non_params=lambda _: rep,
    )
    return TrainState(step=rep, params=param_sh, opt_state=opt_sh, rng=rep)


def create_state(params, tx: optax.GradientTransformation, shardings: TrainState, seed: int) -> TrainState:
    """A fresh train state around (already sharded) params; optimizer state created sharded."""
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
    rng = jax.device_put(jax.random.PRNGKey(seed), shardings.rng)
    return TrainState(step=step, params=params, opt_state=opt_state, rng=rng)


def abstract_state(model_cfg: ModelConfig, tx, shardings: TrainState, param_dtypes=None) -> TrainState:
    """ShapeDtypeStructs (with shardings) of the train state, the restore target."""
    params = llama.abstract_params(model_cfg)
    if param_dtypes is not None:
        params = jax.tree.map(lambda p, d: jax.ShapeDtypeStruct(p.shape, d), params, param_dtypes)
    state = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32), params=params, opt_state=jax.eval_shape(tx.init, params),
        rng=jax.ShapeDtypeStruct((2,), jnp.uint32),
    )
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state, shardings)


def _merge_retain(batch: dict) -> dict:
    if "retain" not in batch:
        return batch
    replay = batch.get("replay")
    retain = batch["retain"]
    merged = retain if replay is None else jax.tree.map(lambda a, b: jnp.concatenate([a, b], 0), replay, retain)
    return {**({"forget": batch["forget"]} if "forget" in batch else {}), "replay": merged}


def _split_micro(batch: dict, grad_accum: int) -> dict:
    def split(x):
        if x.shape[0] % grad_accum:
            raise SynthflawError(f"config: {x.shape[0]} rows per step do not split into train.grad_accum={grad_accum}")
        return x.reshape((grad_accum, x.shape[0] // grad_accum) + x.shape[1:])

    return jax.tree.map(split, batch)


def _to_global_counts(metrics: dict, counts: dict, weights: dict, term_counts: dict):
    """What to add to a microbatch's loss so that each term's sum is divided by the full
    batch's count instead of the microbatch's (the counts do not depend on the params)."""
    extra = jnp.zeros((), jnp.float32)
    for term, (weight, count) in term_counts.items():
        if term in metrics and count in counts:
            local = jax.lax.stop_gradient(jnp.maximum(metrics[count], 1.0))
            extra = extra + weights[weight] * metrics[term] * (local / jnp.maximum(counts[count], 1.0) - 1.0)
    return extra


def _combine_metrics(stacked: dict, counts: dict, term_counts: dict) -> dict:
    """Full-batch metrics from per-microbatch ones: counts add up, each term and forget-side
    average is re-weighted by its microbatch count, anything else is averaged."""
    out = {}
    forget_n = stacked.get("forget_examples")
    for key, values in stacked.items():
        if key == "tokens" or key.endswith(("_tokens", "_examples")):
            out[key] = jnp.sum(values)
        elif key in term_counts and term_counts[key][1] in counts:
            count = term_counts[key][1]
            out[key] = jnp.sum(values * jnp.maximum(stacked[count], 1.0)) / jnp.maximum(counts[count], 1.0)
        elif forget_n is not None and (key.startswith("forget_") or key == "frac_at_bound"):
            out[key] = jnp.sum(values * forget_n) / jnp.maximum(jnp.sum(forget_n), 1.0)
        else:
            out[key] = jnp.mean(values)
    return out


def make_train_step(model_cfg: ModelConfig, loss_cfg, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    mesh: Mesh, shardings: TrainState, grad_accum: int = 1,
                    max_segments: int | None = None, one_forward: bool = True) -> Callable:
    """The jitted step `(state, batch, ref_params) -> (state, metrics)`; state is donated.

    `ref_params` (the frozen model before unlearning, sharded like the params) is used only
    when the loss needs reference logits; pass None otherwise. With `one_forward` the
    forget and replay rows go through the policy (and the reference) in one call, so FSDP
    gathers each weight once per step instead of once per stream (row_groups.py); False
    runs one call per stream, the same numbers (kept to measure the difference)."""
    model = llama.CausalLM(model_cfg, mesh)
    objective = losses.make_objective(loss_cfg, max_segments)
    term_counts = losses.term_counts(loss_cfg)
    needs = reference_needs(loss_cfg)

    def forward(params, b):
        logits, _, _ = model.apply({"params": params}, b["input_ids"], b["positions"], b["segment_ids"])
        return logits

    loss_weights = losses.validate_loss_config(loss_cfg)

    def forward_streams(params, streams):
        if one_forward:
            return row_groups.forward_together(forward, params, streams, mesh)
        return [forward(params, b) if b is not None else None for b in streams]

    def loss_fn(params, ref_params, micro, counts=None):
        forget, replay = micro.get("forget"), micro.get("replay")
        refs = {}
        if needs.any:
            ref_forget, ref_replay = forward_streams(
                ref_params, [forget if needs.forget else None, replay if needs.replay else None])
            if needs.forget:
                refs["forget_ref_logits"] = jax.lax.stop_gradient(ref_forget)
            if needs.replay:
                refs["replay_ref_logits"] = jax.lax.stop_gradient(ref_replay)
        forget_logits, replay_logits = forward_streams(params, [forget, replay])
        loss, metrics = objective(forget_logits, forget, replay_logits, replay, **refs)
        if counts is not None:
            loss = loss + _to_global_counts(metrics, counts, loss_weights, term_counts)
        tokens = sum(jnp.sum(b["segment_ids"] > 0) for b in micro.values())
        metrics["tokens"] = tokens.astype(jnp.float32)
        return loss, metrics

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: dict, ref_params):
        batch = _merge_retain(batch)
        if grad_accum == 1:
            (loss, metrics), grads = grad_fn(state.params, ref_params, batch)
        else:
            counts = losses.objective_counts(loss_cfg, batch.get("forget"), batch.get("replay"), max_segments)
            micro = _split_micro(batch, grad_accum)
            zeros = jax.tree.map(jnp.zeros_like, state.params)

            def body(acc, mb):
                (loss, metrics), grads = grad_fn(state.params, ref_params, mb, counts)
                return jax.tree.map(jnp.add, acc, grads), (loss, metrics)

            # each microbatch's loss is its share of the full-batch loss: shares and grads add up
            grads, (loss, metrics) = jax.lax.scan(body, zeros, micro)
            loss, metrics = jnp.sum(loss), _combine_metrics(metrics, counts, term_counts)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        rng, _ = jax.random.split(state.rng)
        new_state = TrainState(
            step=state.step + finite.astype(jnp.int32),
            params=jax.tree.map(keep, new_params, state.params),
            opt_state=jax.tree.map(keep, new_opt, state.opt_state),
            rng=rng,
        )
        metrics.update(loss=loss, grad_norm=grad_norm, lr=schedule(state.step), finite=finite.astype(jnp.float32))
        return new_state, metrics

    ref_sh = shardings.params if needs.any else None
    return jax.jit(
        step,
        in_shardings=(shardings, None, ref_sh),
        out_shardings=(shardings, shd.replicated(mesh)),
        donate_argnums=(0,),
    )
