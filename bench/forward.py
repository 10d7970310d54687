"""Forward benchmark: `synthflaw_jax.load(d).logits(ids)` against transformers' forward.

    python bench/forward.py [--rounds 9] [--model 10m|smollm2] [--out PATH]
    JAX_PLATFORMS=cuda python bench/forward.py   # both sides on the GPU (bench/devices.py)

Model: train_step.py's shapes (default the 10.0M Llama: vocab 8192, hidden 256, 8 layers,
8 / 4 heads, SwiGLU 688, untied head), random weights saved once as an HF directory that
both sides load, float32, batch 8 x 256 random token ids, no padding.

  ours     `synthflaw_jax.load(dir).logits(ids)` as a user calls it (input checks, positions
           from the mask, one jitted forward), waited for with `block_until_ready`.
  PyTorch  `AutoModelForCausalLM.from_pretrained(dir)` in eval mode under
           `torch.inference_mode()`, `model(input_ids=ids).logits`.

Both produce float32 [8, 256, vocab] logits; their largest difference is reported as a check.
After one warm-up each (our compilation), `--rounds` interleaved rounds (ours, then theirs);
ratio = the median over rounds of PyTorch's time / ours (>1: ours is faster).
Writes bench/results/forward.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import devices  # noqa: E402
import train_step  # noqa: E402  (the shared model shapes)

BATCH, SEQ = train_step.BATCH, train_step.SEQ


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--model", choices=sorted(train_step.SHAPES), default="10m")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "forward.json"))
    a = p.parse_args(argv)

    import jax
    import numpy as np
    import torch
    import transformers

    import synthflaw_jax
    from synthflaw_jax import convert
    from synthflaw_jax.models import llama
    from synthflaw_jax.models.config import ModelConfig

    cfg = ModelConfig(**train_step.SHAPES[a.model])
    device = devices.torch_device()
    with tempfile.TemporaryDirectory() as tmp:
        path = convert.save_hf(llama.init_params(cfg, jax.random.key(0)), cfg, pathlib.Path(tmp) / "hf", progress=False)
        ours_model = synthflaw_jax.load(path)
        theirs_model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    theirs_model = theirs_model.to(device).eval()
    ids = np.random.default_rng(0).integers(3, cfg.vocab_size, (BATCH, SEQ)).astype(np.int32)
    ids_torch = torch.from_numpy(ids.astype(np.int64)).to(device)

    def ours():
        return jax.block_until_ready(ours_model.logits(ids))

    def theirs():
        with torch.inference_mode():
            out = theirs_model(input_ids=ids_torch).logits
            if device == "cuda":
                torch.cuda.synchronize()
            return out

    diff = float(np.max(np.abs(np.asarray(ours()) - theirs().float().cpu().numpy())))
    times = {"ours": [], "pytorch": []}
    for _ in range(a.rounds):
        times["ours"].append(train_step._timed(ours))
        times["pytorch"].append(train_step._timed(theirs))
    per_round = [t / o for o, t in zip(times["ours"], times["pytorch"])]
    tokens = BATCH * SEQ
    result = {
        "device": devices.describe(), "cpu": devices.cpu_name(), "model": a.model,
        "params": cfg.num_params(), "batch": BATCH, "seq": SEQ, "rounds": a.rounds,
        "torch_threads": torch.get_num_threads(), "max_abs_logit_diff": diff,
        "ours_s_median": statistics.median(times["ours"]), "pytorch_s_median": statistics.median(times["pytorch"]),
        "ours_tokens_per_s": tokens / statistics.median(times["ours"]),
        "pytorch_tokens_per_s": tokens / statistics.median(times["pytorch"]),
        "ratio_median_of_rounds": statistics.median(per_round), "ratio_per_round": per_round,
        "ours_s": times["ours"], "pytorch_s": times["pytorch"],
        "loadavg_1min": os.getloadavg()[0],
    }
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ran on {result['device']}; {a.model} ({result['params'] / 1e6:.1f}M), batch {BATCH} x {SEQ}, "
          f"largest logit difference {diff:.2e}")
    print(f"ours {result['ours_s_median'] * 1e3:.1f} ms, PyTorch {result['pytorch_s_median'] * 1e3:.1f} ms "
          f"(medians of {a.rounds} rounds); ours / PyTorch speed: {result['ratio_median_of_rounds']:.2f}x "
          f"(rounds {min(per_round):.2f}-{max(per_round):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
