"""End-to-end training throughput: `synthflaw unlearn` (loss method "lm") against a plain
transformers + AdamW loop, on the same model and data, on this CPU.

    python bench/unlearn_e2e.py [--steps 60] [--log-every 5] [--whole-examples] [--no-huge-pages] [--out PATH]
    JAX_PLATFORMS=cuda python bench/unlearn_e2e.py   # both sides on the GPU (bench/devices.py)

Model: train_step.py's Llama shape (hidden 256, 8 layers, 8 heads / 4 KV heads, SwiGLU 688,
untied head, float32) with the tiny tokenizer's vocabulary, random weights saved once as an
HF directory that both sides load. Data: the Python standard library's docstrings (real
English, built offline), rows of 256 tokens, batch 8. Our replay stream fills its rows by
splitting documents at row ends (`split_across_rows`), as the PyTorch loop's rows of one
long token stream do; `--whole-examples` packs whole documents instead (rows end in padding).

  ours     `python -m synthflaw_jax unlearn` as a user starts it, in a process of its own that
           re-executes itself with its glibc heap settings, huge pages and freed memory kept
           for reuse (synthflaw_jax/malloc_tuning.py; off with --no-huge-pages): the data
           pipeline, the jitted step, metrics fetched every --log-every steps, the NaN guard,
           the progress bar, one checkpoint and the HF export at the end (outside the timed
           window). Steady state = the median over the logging intervals but the first (which
           holds the compilation)
           and the last (the final checkpoint) of the run's logged tokens_per_s, scaled from
           all tokens in the rows to those with a loss (`replay_tokens` / `tokens`).
  PyTorch  `LlamaForCausalLM.from_pretrained` of the same directory, `torch.optim.AdamW` with
           the same hyperparameters and clipping at 1.0, a loop over rows of the same
           tokenized text: forward with labels, backward, clip, step, zero_grad, and the loss
           read back every step (`.item()`, as a training loop that logs does). Steady state
           = tokens with a loss over the steps after the first five. It runs in this process
           with glibc's default settings, as a plain training script does.

tokens/s counts tokens that carry a loss on both sides. ratio = ours / PyTorch.
Writes bench/results/unlearn_e2e.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import devices  # noqa: E402
from synthflaw_jax import malloc_tuning  # noqa: E402
import train_step  # noqa: E402  (the shared model shape and optimizer settings)

BATCH, SEQ = train_step.BATCH, train_step.SEQ


def write_model_and_data(root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(HF directory of the random model with the tiny tokenizer, JSONL of docstrings)."""
    import jax

    from synthflaw_jax import convert
    from synthflaw_jax.data.sample_data import stdlib_docstrings
    from synthflaw_jax.data.tokenizer import tiny_tokenizer, tiny_tokenizer_dir
    from synthflaw_jax.models import llama
    from synthflaw_jax.models.config import ModelConfig

    cfg = ModelConfig(**{**train_step.MODEL, "vocab_size": len(tiny_tokenizer())})
    hf = root / "hf"
    convert.save_hf(llama.init_params(cfg, jax.random.key(0)), cfg, hf, assets_from=tiny_tokenizer_dir(),
                    progress=False)
    data = root / "text.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in stdlib_docstrings()))
    return hf, data


def ours(hf: pathlib.Path, data: pathlib.Path, workdir: pathlib.Path, steps: int, log_every: int,
         split_across_rows: bool = True, huge_pages: bool = True) -> dict:
    """Run `synthflaw unlearn` (method lm) as a user starts it and read its steady-state
    tokens/s from metrics.jsonl."""
    o = train_step.OPTIM
    overrides = {
        "model.path": hf, "data.tokenizer": hf, "data.batch_size": BATCH, "data.seq_len": SEQ,
        "data.mixture": "replay=1", "data.streams.forget.source": "", "data.streams.replay.source": data,
        "data.streams.replay.source_type": "jsonl", "data.streams.replay.format": "text",
        "data.streams.replay.split_across_rows": split_across_rows, "loss.method": "lm",
        "train.steps": steps, "train.log_every": log_every, "checkpoint.every": steps, "checkpoint.keep": 1,
        **{f"optim.{k}": v for k, v in o.items()}, "optim.warmup_steps": 0, "optim.schedule": "constant",
    }
    config = workdir.parent / "e2e_config.py"
    config.write_text("from synthflaw_jax import unlearn\n\n\ndef get_config():\n    return unlearn.default_config()\n")
    cmd = [sys.executable, "-m", "synthflaw_jax", "unlearn", "--config", str(config), "--workdir", str(workdir),
           *(f"--config.{k}={v}" for k, v in overrides.items())]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if not huge_pages:
        env[malloc_tuning.RELAUNCHED] = "1"  # as if already re-executed: runs as started
    subprocess.run(cmd, check=True, env=env)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    intervals: list[list[dict]] = []  # rows of one logging interval share its tokens_per_s
    for r in rows:
        if not intervals or r["tokens_per_s"] != intervals[-1][0]["tokens_per_s"]:
            intervals.append([])
        intervals[-1].append(r)
    # the run's tokens_per_s counts every token in a row; count those with a loss, as PyTorch's side does
    loss_tok_s = [group[0]["tokens_per_s"] * sum(r["replay_tokens"] for r in group) / sum(r["tokens"] for r in group)
                  for group in intervals]
    steady = loss_tok_s[1:-1]  # the first holds the compilation, the last the final checkpoint
    return {"tokens_per_s": statistics.median(steady), "intervals": loss_tok_s,
            "tokens_per_step": statistics.median(r["replay_tokens"] for r in rows),
            "row_tokens_per_step": statistics.median(r["tokens"] for r in rows)}


def pytorch(hf: pathlib.Path, data: pathlib.Path, steps: int) -> dict:
    """The plain transformers + AdamW loop on rows of the same tokenized text."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(hf))
    ids: list[int] = []
    for line in data.read_text().splitlines():
        ids += tok(json.loads(line)["text"])["input_ids"] + [tok.eos_token_id]
        if len(ids) >= (steps + 1) * BATCH * SEQ:
            break
    rows = np.asarray(ids[: len(ids) // SEQ * SEQ], np.int64).reshape(-1, SEQ)
    device = devices.torch_device()
    model = LlamaForCausalLM.from_pretrained(str(hf), dtype=torch.float32).to(device)
    model.train()
    o = train_step.OPTIM
    opt = torch.optim.AdamW(model.parameters(), lr=o["learning_rate"], betas=(o["b1"], o["b2"]), eps=o["eps"],
                            weight_decay=o["weight_decay"])
    times, tokens = [], BATCH * (SEQ - 1)
    for step in range(steps):
        lo = (step * BATCH) % (len(rows) - BATCH)
        batch = torch.from_numpy(rows[lo: lo + BATCH]).to(device)
        t = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        times.append(time.perf_counter() - t)
    steady = times[5:]
    return {"tokens_per_s": tokens * len(steady) / sum(steady), "tokens_per_step": tokens,
            "step_seconds_median": statistics.median(steady)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--whole-examples", action="store_true", help="pack whole documents (no splitting at row ends)")
    p.add_argument("--no-huge-pages", action="store_true", help="run our command without its glibc heap settings")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "unlearn_e2e.json"))
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        hf, data = write_model_and_data(root)
        mine = ours(hf, data, root / "run", a.steps, a.log_every, split_across_rows=not a.whole_examples,
                    huge_pages=not a.no_huge_pages)
        theirs = pytorch(hf, data, a.steps)
    result = {"ours": mine, "pytorch": theirs, "ratio": mine["tokens_per_s"] / theirs["tokens_per_s"],
              "steps": a.steps, "batch": BATCH, "seq_len": SEQ, "cpu": devices.cpu_name(), "device": devices.describe(),
              "cpu_count": os.cpu_count(), "split_across_rows": not a.whole_examples,
              "huge_pages": not a.no_huge_pages}
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ran on {result['device']}")
    print(f"ours {mine['tokens_per_s']:,.0f} tok/s (steady, median of logged intervals), "
          f"PyTorch {theirs['tokens_per_s']:,.0f} tok/s; ratio {result['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
