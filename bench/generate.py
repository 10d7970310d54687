"""Generation benchmark: decode tokens/s of our KV-cache decoder vs transformers' `generate`.

    python bench/generate.py [--batch 8] [--prompt-len 32] [--new-tokens 128] [--hidden 128 --layers 4]
    python bench/generate.py --smollm2 --batch 16 --prompt-len 100 --new-tokens 512 --no-baseline
    JAX_PLATFORMS=cuda python bench/generate.py   # both sides on the GPU (bench/devices.py)

`--smollm2` is SmolLM2-135M's shape (30 layers, hidden 576, 9 heads / 3 KV heads, MLP 1536,
vocab 49152, tied embeddings) with random weights; `--no-baseline` times ours only.

Baseline: `transformers.AutoModelForCausalLM.generate(do_sample=False)` (PyTorch on the same
kind of device as ours, its default attention, all cores on a CPU) on the same weights, the
same left-padded batch, no stop token.
Measured, each the median of --repeats timed runs after one warm-up (our compile excluded):
  ours_tok_s   new tokens per second of `generate_ids` (prefill + decode loop in one jit)
  hf_tok_s     the same for transformers
  ratio        ours_tok_s / hf_tok_s (target >= 2)
  same_tokens  whether both produced identical greedy tokens
Writes bench/results/generate.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _timed(fn, repeats):
    fn()  # warm-up (compile for ours)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=32, help="longest prompt; rows are shorter by up to half")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--smollm2", action="store_true", help="SmolLM2-135M's shape (overrides --hidden/--layers)")
    p.add_argument("--no-baseline", action="store_true", help="time ours only (no transformers run)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "generate.json"))
    args = p.parse_args(argv)

    import numpy as np
    import torch
    import transformers

    import devices
    import synthflaw_jax
    from synthflaw_jax import convert
    from synthflaw_jax.models import generate as gen
    from synthflaw_jax.models import loading, presets

    shape = dict(hidden_size=args.hidden, intermediate_size=int(args.hidden * 2.6875) // 8 * 8,
                 num_hidden_layers=args.layers)
    if args.smollm2:
        shape = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0)
    cfg = presets.tiny(**shape, max_position_embeddings=max(512, args.prompt_len + args.new_tokens))
    with tempfile.TemporaryDirectory() as tmp:
        path = convert.save_hf(loading.random_model(cfg, seed=0).params, cfg, pathlib.Path(tmp) / "hf", progress=False)
        ours_model = synthflaw_jax.load(path)
        device = devices.torch_device()
        hf = None if args.no_baseline else transformers.AutoModelForCausalLM.from_pretrained(str(path)).to(device).eval()

    rng = np.random.default_rng(0)
    lengths = rng.integers(args.prompt_len // 2, args.prompt_len + 1, args.batch)
    lengths[0] = args.prompt_len
    ids, mask = gen.left_pad([rng.integers(3, cfg.vocab_size, n).tolist() for n in lengths], args.prompt_len, 0)

    def ours():
        return gen.generate_ids(ours_model.config, ours_model.params, ids, mask,
                                max_new_tokens=args.new_tokens, stop_ids=(), pad_id=0)

    def theirs():
        with torch.inference_mode():
            out = hf.generate(input_ids=torch.tensor(ids, dtype=torch.long, device=device),
                              attention_mask=torch.tensor(mask, device=device),
                              do_sample=False, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                              pad_token_id=0, eos_token_id=None)
        return out[:, ids.shape[1]:].cpu().numpy()

    t_ours, tok_ours = _timed(ours, args.repeats)
    new = args.batch * args.new_tokens
    result = {
        "model": {"hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers, "vocab": cfg.vocab_size,
                  "params": loading.llama.param_count(ours_model.params)},
        "batch": args.batch, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
        "ours_s": t_ours, "ours_tok_s": new / t_ours,
        "machine": devices.describe(), "torch_threads": torch.get_num_threads(),
    }
    print(f"ran on {result['machine']}")
    print(f"model {result['model']}; batch {args.batch} x prompt <= {args.prompt_len} + {args.new_tokens} new tokens")
    print(f"ours          {result['ours_tok_s']:9.1f} tok/s ({t_ours:.3f} s)")
    if not args.no_baseline:
        t_hf, tok_hf = _timed(theirs, args.repeats)
        result.update(hf_s=t_hf, hf_tok_s=new / t_hf, ratio=t_hf / t_ours,
                      same_tokens=bool(np.array_equal(tok_ours, tok_hf)))
        print(f"transformers  {result['hf_tok_s']:9.1f} tok/s ({t_hf:.3f} s)")
        print(f"ratio ours/transformers: {result['ratio']:.2f}x (target >= 2x); same greedy tokens: "
              f"{result['same_tokens']}")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
