"""Compile the sharded unlearning step ahead of time on abstract arrays and measure it.

Runs in a process whose JAX sees exactly one (fake CPU) device per chip of the topology: the
mesh, the shardings and the jitted step are the ones `synthflaw unlearn` builds, lowered with
`jax.ShapeDtypeStruct` inputs and compiled, so no parameter is ever allocated.
"""
from __future__ import annotations

import math
import pathlib
import time

import jax
import jax.numpy as jnp

from synthflaw_jax import forgetting, losses, model_zoo, train
from synthflaw_jax import sharding as shd
from synthflaw_jax.data import config as data_config
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models import llama, presets
from synthflaw_jax.models.config import ModelConfig
from synthflaw_jax.planning import estimate, hlo
from synthflaw_jax.tpu_specs import Topology

BATCH_FIELDS = ("input_ids", "loss_mask", "segment_ids", "positions")


def resolve_model(config) -> tuple[ModelConfig, str]:
    """The architecture to plan: `model.path`'s config.json when it is a local directory,
    else the zoo entry `model.arch`, else the tiny model; returns (config, where it came from)."""
    m = config.model
    runtime = dict(dtype=m.dtype, param_dtype=m.param_dtype, remat_policy=m.remat_policy, attention_kernel="xla")
    path = str(m.path)
    if path == "tiny":
        return presets.tiny(**runtime), "tiny"
    if "://" in path:  # a model in a bucket: only its config.json is read
        from synthflaw_jax import runtime as runtime_lib

        where = path.rstrip("/") + "/config.json"
        return ModelConfig.from_file(runtime_lib.local_input(where, "model.path"), **runtime), where
    local = pathlib.Path(path)
    if (local / "config.json").is_file():
        return ModelConfig.from_file(local / "config.json", **runtime), str(local / "config.json")
    arch = m.get("arch", "") if hasattr(m, "get") else ""
    if arch:
        return model_zoo.model_config(arch, **runtime), f"model_zoo:{arch}"
    raise SynthflawError(
        f"config model.path: {path} holds no config.json here and model.arch is not set; "
        f"set --config.model.arch to one of {', '.join(model_zoo.names())}"
    )


def _max_segments(config) -> int | None:
    # the same rule as synthflaw_jax.unlearn: packed rows hold up to seq_len // 8 examples by default
    if not config.data.packing:
        return None
    n = int(config.train.max_segments)
    return n if n > 0 else max(int(config.data.seq_len) // 8, 1)


def _shard_bytes(tree) -> int:
    total = 0
    for leaf in jax.tree.leaves(tree):
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shard) * jnp.dtype(leaf.dtype).itemsize
    return total


def compile_step(config, topology: Topology) -> dict:
    """Build and compile the step for `topology`; returns a JSON-ready dict of what was found."""
    if jax.device_count() != topology.chips:
        raise SynthflawError(f"plan: this process sees {jax.device_count()} devices, topology needs {topology.chips}")
    warnings: list[str] = []
    model_cfg, source = resolve_model(config)
    if config.model.attention_kernel != "xla":
        warnings.append(f"planned with attention_kernel 'xla' (the configured {config.model.attention_kernel!r} "
                        "runs on TPU only); a TPU flash kernel needs less temporary memory than XLA:CPU reports")
    loss_cfg = losses.validate_loss_config(config.loss)
    needs = train.reference_needs(config.loss)
    data_config.validate_config(config.data)
    rows = data_config.stream_batch_sizes(config.data)
    seq_len, grad_accum = int(config.data.seq_len), int(config.train.grad_accum)
    if grad_accum < 1:
        raise SynthflawError(f"config train.grad_accum: must be >= 1, got {grad_accum}")
    if seq_len > model_cfg.max_position_embeddings:
        warnings.append(f"data.seq_len {seq_len} exceeds the model's max_position_embeddings "
                        f"{model_cfg.max_position_embeddings}")

    mesh = shd.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    schedule = train.make_schedule(config.optim, max(int(config.train.steps), 1))
    tx = train.make_optimizer(config.optim, schedule)
    shardings = train.state_shardings(model_cfg, tx, mesh)
    param_dtypes = jax.tree.map(lambda _: jnp.dtype(model_cfg.param_dtype), llama.abstract_params(model_cfg))
    state = train.abstract_state(model_cfg, tx, shardings, param_dtypes)
    ref = state.params if needs.any else None

    batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
    batch = {}
    for stream, n in rows.items():
        if n % grad_accum:
            raise SynthflawError(f"config: {n} {stream} rows per step do not split into train.grad_accum={grad_accum}")
        if (n // grad_accum) % batch_shards:
            warnings.append(f"{stream}: {n // grad_accum} rows per microbatch do not divide over {batch_shards} "
                            "batch shards (data x fsdp), so every device holds all of them; use a multiple")
        sharding = shd.logical_to_sharding(("batch", "length"), (n, seq_len), mesh)
        fields = BATCH_FIELDS
        if stream == "forget" and forgetting.uses_pattern_scope(loss_cfg):
            fields += (forgetting.PATTERN_MASK,)  # the pattern scope's per-token mask (data/scope.py)
        batch[stream] = {f: jax.ShapeDtypeStruct((n, seq_len), jnp.int32, sharding=sharding) for f in fields}

    step = train.make_train_step(model_cfg, config.loss, tx, schedule, mesh, shardings, grad_accum,
                                 _max_segments(config))
    t0 = time.perf_counter()
    lowered = step.lower(state, batch, ref)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    stats = hlo.analyze(compiled.as_text(), topology.chips)
    if stats.unknown_trip_counts:
        warnings.append(f"{stats.unknown_trip_counts} loops without a known trip count were counted once")

    replay_rows = rows.get("replay", 0) + rows.get("retain", 0)
    shape = estimate.StepShape(
        policy_rows=sum(rows.values()),
        reference_rows=(rows.get("forget", 0) if needs.forget else 0) + (replay_rows if needs.replay else 0),
        seq_len=seq_len, grad_accum=grad_accum,
    )
    analytic = estimate.state_bytes(model_cfg, topology.chips, needs.any)
    state_sharded = {"params": _shard_bytes(state.params), "optimizer": _shard_bytes(state.opt_state),
                     "reference_params": _shard_bytes(ref) if ref is not None else 0,
                     "batch": _shard_bytes(batch)}
    useful = estimate.model_flops(model_cfg, shape)
    hardware = useful + estimate.remat_flops(model_cfg, shape)
    hbm = estimate.hbm_traffic_bytes(model_cfg, shape, topology.chips, needs.any)
    flops_per_chip = stats.dot_flops if stats.dot_flops > 0 else hardware / topology.chips
    xla = {k: int(getattr(mem, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                             "alias_size_in_bytes", "temp_size_in_bytes",
                                             "generated_code_size_in_bytes")}
    peak = xla["argument_size_in_bytes"] + xla["temp_size_in_bytes"] + xla["output_size_in_bytes"] \
        - xla["alias_size_in_bytes"]
    return {
        "model": {"source": source, "model_type": model_cfg.model_type, "num_params": model_cfg.num_params(),
                  "matmul_params": estimate.matmul_params(model_cfg), "dtype": model_cfg.dtype,
                  "param_dtype": model_cfg.param_dtype, "remat_policy": model_cfg.remat_policy},
        "mesh": dict(mesh.shape),
        "batch": {"rows": rows, "seq_len": seq_len, "grad_accum": grad_accum, "batch_shards": batch_shards,
                  "policy_tokens_per_step": shape.policy_tokens,
                  "reference_tokens_per_step": shape.reference_rows * seq_len,
                  "reference_forward": {"forget": needs.forget, "replay": needs.replay}},
        "loss_method": loss_cfg["method"],
        "memory_per_device": {
            "analytic": analytic,
            "from_shardings": state_sharded,
            "xla": xla,
            "state_analytic": analytic["params"] + analytic["optimizer"] + analytic["reference_params"],
            "state_xla": xla["argument_size_in_bytes"] - state_sharded["batch"],
            "peak_estimate": peak,
        },
        "flops": {
            "model_per_step": useful,
            "hardware_analytic_per_step": hardware,
            "hlo_dot_per_device": stats.dot_flops,
            "hlo_dot_per_step": stats.dot_flops * topology.chips,
            "cost_analysis_per_device": float(cost.get("flops", 0.0)),
            "loop_trip_counts": sorted(set(stats.loops)),
        },
        "collectives_per_device": stats.collective_bytes,
        "hbm_traffic_per_chip": hbm,
        "roofline": estimate.roofline(topology, flops_per_chip, hbm, stats.total_collective_bytes, useful,
                                      shape.policy_tokens,
                                      estimate.activation_bytes(model_cfg, shape, topology.chips)),
        "fits": peak <= topology.chip.hbm_bytes,
        "hbm_fraction": peak / topology.chip.hbm_bytes,
        "compile_seconds": {"lower": t1 - t0, "compile": t2 - t1},
        "warnings": warnings,
    }
