"""Data pipeline benchmark: tokenize+pack speed on one core, and whether it keeps up with training.

    python bench/data.py [--steps 40] [--no-train]

Baseline: one jitted train step of the tiny default (configs/tiny.py: the tiny model, batch
8 x 128 split forget/replay, lower-bounded loss) on this machine, all cores, after compile.
Measured:
  tokenize_pack   Formatter + truncation + packing alone over the synthetic Q-A sample:
                  examples/s and tokens/s on ONE core (sched_setaffinity, RAYON_NUM_THREADS=1)
  pipeline_step   seconds per mixture batch from `build_mixture` (grain shuffle/repeat/shard +
                  tokenize + pack) on one core: what the training loop waits for per step
  train_step      seconds per tiny train step (the baseline)
  ratio           pipeline_step / train_step: the pipeline is not the bottleneck while < 1
                  (JAX dispatches the step asynchronously, so the next batch is built meanwhile)
Writes bench/results/data.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the Rust tokenizer's thread pool: one core
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny_config():
    """configs/tiny.py's config."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_config", ROOT / "configs" / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def time_train_step(config, steps: int) -> dict:
    """Mean seconds of the tiny train step on a fixed batch, after two warm-up calls."""
    import jax

    from synthflaw_jax import sharding as shd
    from synthflaw_jax import train
    from synthflaw_jax.data import layout, pipeline
    from synthflaw_jax.data.tokenizer import tiny_tokenizer
    from synthflaw_jax.models import llama, presets

    tok = tiny_tokenizer()
    mesh = shd.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    model_cfg = presets.tiny(vocab_size=len(tok), dtype=config.model.dtype, param_dtype=config.model.param_dtype)
    schedule = train.make_schedule(config.optim, steps + 2)
    tx = train.make_optimizer(config.optim, schedule)
    shardings = train.state_shardings(model_cfg, tx, mesh)
    params = llama.init_params(model_cfg, jax.random.key(0), mesh)
    ref = jax.tree.map(lambda x: x.copy(), params) if train.reference_needs(config.loss).any else None
    state = train.create_state(params, tx, shardings, 0)
    step_fn = train.make_train_step(model_cfg, config.loss, tx, schedule, mesh, shardings, 1,
                                    max(config.data.seq_len // 8, 1) if config.data.packing else None)
    host = next(pipeline.build_mixture(config.data, tokenizer=tok, process_index=0, process_count=1))
    batch = {k: layout.to_global(b, shd.batch_sharding(mesh)) for k, b in host.items()}
    for _ in range(2):
        state, metrics = step_fn(state, batch, ref)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step_fn(state, batch, ref)
    jax.block_until_ready(metrics)
    return {"seconds_per_step": (time.perf_counter() - start) / steps, "devices": len(jax.devices())}


def time_tokenize_pack(config, seconds: float = 3.0) -> dict:
    """Examples/s and tokens/s of format + truncation + packing on the synthetic Q-A sample."""
    from synthflaw_jax.data import config as data_config
    from synthflaw_jax.data import formats, packing, sample_data
    from synthflaw_jax.data.tokenizer import tiny_tokenizer

    records = sample_data.synthetic_qa_records(2000, seed=0)
    fmt = formats.Formatter(tiny_tokenizer(), data_config.format_spec(config, "forget"))
    n_examples = n_tokens = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, len(records), 64):
            examples = [packing.apply_truncation(e, config.seq_len, config.truncation)[0] for e in fmt(records[i:i + 64])]
            for batch in packing.pack_examples(examples, rows=4, seq_len=config.seq_len):
                n_tokens += int((batch["segment_ids"] > 0).sum())
            n_examples += len(examples)
    elapsed = time.perf_counter() - start
    return {"examples_per_s": n_examples / elapsed, "tokens_per_s": n_tokens / elapsed}


def time_pipeline(config, steps: int) -> dict:
    """Seconds per mixture batch from build_mixture, after the first (source indexing) batch."""
    from synthflaw_jax.data import pipeline
    from synthflaw_jax.data.tokenizer import tiny_tokenizer

    start = time.perf_counter()
    it = pipeline.build_mixture(config.data, tokenizer=tiny_tokenizer(), process_index=0, process_count=1)
    next(it)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return {"seconds_per_step": (time.perf_counter() - start) / steps, "setup_seconds": setup}


def main(argv=None) -> int:
    """Run the measurements, print a summary, write bench/results/data.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--no-train", action="store_true", help="skip the train-step baseline")
    args = parser.parse_args(argv)
    config = tiny_config()
    all_cpus = os.sched_getaffinity(0)
    results = {"python": platform.python_version(), "cpus": len(all_cpus),
               "batch": f"{config.data.batch_size} x {config.data.seq_len}", "mixture": config.data.mixture}
    if not args.no_train:
        results["train_step"] = time_train_step(config, args.steps)
    os.sched_setaffinity(0, {min(all_cpus)})  # the data side on one core
    results["tokenize_pack"] = time_tokenize_pack(config.data)
    results["pipeline_step"] = time_pipeline(config, args.steps * 5)
    if "train_step" in results:
        results["ratio_pipeline_over_train"] = (
            results["pipeline_step"]["seconds_per_step"] / results["train_step"]["seconds_per_step"]
        )
    out = ROOT / "bench" / "results" / "data.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    tp = results["tokenize_pack"]
    print(f"tokenize+pack (1 core): {tp['examples_per_s']:,.0f} examples/s, {tp['tokens_per_s']:,.0f} tokens/s")
    print(f"pipeline: {results['pipeline_step']['seconds_per_step'] * 1e3:.2f} ms per mixture batch (1 core)")
    if "train_step" in results:
        ratio = results["ratio_pipeline_over_train"]
        print(f"baseline tiny train step: {results['train_step']['seconds_per_step'] * 1e3:.1f} ms "
              f"({results['cpus']} cores)")
        print(f"ratio pipeline/train = {ratio:.3f}: " + ("keeps up" if ratio < 1 else "THE PIPELINE IS THE BOTTLENECK"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
