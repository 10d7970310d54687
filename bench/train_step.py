"""Train-step throughput: our jitted unlearning step vs the same model, batch and optimizer in
PyTorch (transformers LlamaForCausalLM + torch.optim.AdamW) on this CPU, as a ratio; model FLOP
utilisation against a measured matmul peak; per-device state bytes of the compiled step on
8 fake devices vs 1 (`memory_analysis()`).

    python bench/train_step.py [--steps 6] [--hidden 256] [--layers 8] [--batch 8] [--seq 256]

Both sides train on the same random token batch (plain next-token NLL, AdamW, float32);
ours is timed twice: the plain NLL step ("lm") and the paper's full objective
("lower_bounded": forget + replay + KL to a frozen reference, 3 forwards). Medians of
interleaved repetitions; writes bench/results/train_step.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "train_step.json"


def _model_config(args):
    from synthflaw_jax.models.config import ModelConfig

    return ModelConfig(vocab_size=2048, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
                       num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                       num_key_value_heads=max(args.hidden // 128, 1), max_position_embeddings=args.seq,
                       tie_word_embeddings=False)


def _batch(args, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 2048, (args.batch, args.seq)).astype(np.int32)
    return {"input_ids": ids, "loss_mask": np.ones_like(ids), "segment_ids": np.ones_like(ids),
            "positions": np.broadcast_to(np.arange(args.seq, dtype=np.int32), ids.shape).copy()}


def jax_stepper(args, method: str, mesh_devices: int = 1):
    """(step(batch) -> blocks until done, compiled step) for our step on `mesh_devices` devices."""
    import jax
    import jax.numpy as jnp

    from synthflaw_jax import train, unlearn
    from synthflaw_jax.models import llama
    from synthflaw_jax.sharding import make_mesh

    cfg = _model_config(args)
    c = unlearn.default_config()
    c.loss.method = method
    schedule = train.make_schedule(c.optim, 1000)
    tx = train.make_optimizer(c.optim, schedule)
    mesh = make_mesh(1, -1, 1, devices=jax.devices()[:mesh_devices])
    shardings = train.state_shardings(cfg, tx, mesh)
    params = llama.init_params(cfg, jax.random.key(0), mesh)
    ref = jax.tree.map(jnp.copy, params) if train.reference_needs(c.loss).any else None
    state = {"s": train.create_state(params, tx, shardings, 0)}
    step = train.make_train_step(cfg, c.loss, tx, schedule, mesh, shardings)

    def run(batch):
        streams = {"replay": batch} if method == "lm" else {"forget": batch, "replay": batch}
        state["s"], metrics = step(state["s"], streams, ref)
        jax.block_until_ready(metrics["loss"])

    return run, (step, state, ref)


def torch_stepper(args):
    """step(batch) for transformers' Llama + torch AdamW, same shapes."""
    import torch
    import transformers

    cfg = _model_config(args)
    hf = transformers.LlamaConfig(**{k: v for k, v in cfg.to_hf_dict().items()
                                     if k not in ("architectures", "model_type", "dtype")})
    model = transformers.LlamaForCausalLM(hf)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run(batch):
        ids = torch.from_numpy(batch["input_ids"].astype("int64"))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return run


def matmul_peak_gflops() -> float:
    """Best GFLOP/s of a jitted 2048^3 float32 matmul on this CPU."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((2048, 2048), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return best


def memory_child(args) -> dict:
    """Per-device argument bytes of the compiled lower_bounded step on 1 and 8 devices (run in a
    child with 8 fake devices)."""
    import jax

    out = {}
    for n in (1, 8):
        _, (step, state, ref) = jax_stepper(args, "lower_bounded", n)
        b = _batch(args, 0)
        streams = {"forget": b, "replay": b}
        compiled = step.lower(state["s"], streams, ref).compile()
        mem = compiled.memory_analysis()
        out[str(n)] = {"argument_bytes": int(mem.argument_size_in_bytes), "temp_bytes": int(mem.temp_size_in_bytes)}
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state["s"])) + sum(x.nbytes for x in jax.tree.leaves(ref))
    out["state_bytes_total"] = int(state_bytes)
    return out


def main() -> int:
    """Measure and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return 0

    cfg = _model_config(args)
    tokens = args.batch * args.seq
    runners = {"ours_lm": jax_stepper(args, "lm")[0], "ours_lower_bounded": jax_stepper(args, "lower_bounded")[0],
               "torch_lm": torch_stepper(args)}
    batches = [_batch(args, i) for i in range(args.steps + 1)]
    for run in runners.values():  # compile / warm up
        run(batches[0])
    times = {k: [] for k in runners}
    for i in range(args.steps):  # interleaved, so load changes hit all sides alike
        for name, run in runners.items():
            t = time.perf_counter()
            run(batches[i + 1])
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    tok_s = {k: tokens / v for k, v in med.items()}
    # 6 N T for forward + backward of the matmul parameters (embedding lookup excluded) + attention
    n_matmul = cfg.num_params() - cfg.vocab_size * cfg.hidden_size
    attn = 12 * cfg.num_hidden_layers * cfg.hidden_size * args.seq * tokens / 2
    flops_lm = 6 * n_matmul * tokens + attn
    peak = matmul_peak_gflops()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    child = subprocess.run([sys.executable, __file__, "--memory-child", "--hidden", str(args.hidden), "--layers",
                            str(args.layers), "--batch", str(args.batch), "--seq", str(args.seq)],
                           env=env, capture_output=True, text=True, check=True)
    mem = json.loads(child.stdout.strip().splitlines()[-1])
    result = {
        "model_params": cfg.num_params(), "batch": args.batch, "seq": args.seq, "steps": args.steps,
        "median_seconds": med, "tokens_per_s": tok_s,
        "ratio_ours_lm_over_torch": tok_s["ours_lm"] / tok_s["torch_lm"],
        "matmul_peak_gflops": peak,
        "mfu_ours_lm": flops_lm / med["ours_lm"] / 1e9 / peak,
        "mfu_torch_lm": flops_lm / med["torch_lm"] / 1e9 / peak,
        "memory": mem,
        "state_bytes_per_device_8_over_1": mem["8"]["argument_bytes"] / mem["1"]["argument_bytes"],
        "machine": f"{os.cpu_count()} CPUs, shared",
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"model {cfg.num_params() / 1e6:.1f}M params, batch {args.batch} x {args.seq}, medians of {args.steps}")
    for k in runners:
        print(f"  {k:20s} {med[k]:.3f} s/step  {tok_s[k]:8.0f} tokens/s")
    print(f"ours (lm) / PyTorch tokens/s: {result['ratio_ours_lm_over_torch']:.2f}x")
    print(f"matmul peak {peak:.0f} GFLOP/s; MFU ours {result['mfu_ours_lm']:.1%}, PyTorch {result['mfu_torch_lm']:.1%}")
    print(f"compiled step argument bytes per device: 1 device {mem['1']['argument_bytes'] / 2**20:.1f} MiB, "
          f"8 devices {mem['8']['argument_bytes'] / 2**20:.1f} MiB "
          f"(ratio {result['state_bytes_per_device_8_over_1']:.3f}; target <= 0.125 + 5%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
