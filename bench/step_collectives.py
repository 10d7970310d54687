"""Collectives of the compiled unlearning step on an 8-way FSDP mesh, one policy forward per
step against one per stream (`train.make_train_step(one_forward=...)`).

    python bench/step_collectives.py [--mesh 1,8,1] [--out PATH]

Compiles (does not run) the step on 8 fake host devices for the bench's 10M Llama
(bench/train_step.py's shapes: batch 8 x 256 per stream) and counts, from the optimized HLO
(synthflaw_jax.planning.hlo, loop bodies multiplied by their trip counts), how many
all-gathers run per step and the bytes each device receives, for the loss methods that read
both streams. Under FSDP the all-gathers are the weights, gathered for each forward and
again for each backward. Writes bench/results/step_collectives.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from synthflaw_jax import train, unlearn  # noqa: E402
from synthflaw_jax.models import llama, presets  # noqa: E402
from synthflaw_jax.planning import hlo  # noqa: E402
from synthflaw_jax.sharding import make_mesh  # noqa: E402

BATCH, SEQ = 8, 256
LOSSES = {
    "graddiff (policy only)": {"method": "graddiff"},
    "paper step (bound + replay + KL on replay)": {"method": "lower_bounded"},
    "paper step, KL on forget prompts too": {"method": "lower_bounded", "bias_on_forget_prompt": True},
    "npo + replay": {"method": "npo"},
}


def _model():
    return presets.tiny(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=8,
                        num_attention_heads=8, num_key_value_heads=4, tie_word_embeddings=False)


def _batch():
    ids = np.ones((BATCH, SEQ), np.int32)
    stream = {"input_ids": ids, "loss_mask": ids, "segment_ids": ids,
              "positions": np.broadcast_to(np.arange(SEQ, dtype=np.int32), (BATCH, SEQ)).copy()}
    return {"forget": stream, "replay": dict(stream)}


def collectives(loss_cfg: dict, mesh, one_forward: bool) -> dict:
    """All-gather executions and bytes per device of one compiled step."""
    cfg = _model()
    c = unlearn.default_config()
    c.loss.update(loss_cfg)
    schedule = train.make_schedule(c.optim, 10)
    tx = train.make_optimizer(c.optim, schedule)
    shardings = train.state_shardings(cfg, tx, mesh)
    abstract = train.abstract_state(cfg, tx, shardings)
    ref = abstract.params if train.reference_needs(c.loss).any else None
    step = train.make_train_step(cfg, c.loss, tx, schedule, mesh, shardings, one_forward=one_forward)
    stats = hlo.analyze(step.lower(abstract, _batch(), ref).compile().as_text(), mesh.size)
    return {"all_gathers": stats.collective_ops.get("all-gather", 0),
            "all_gather_mib": stats.collective_bytes.get("all-gather", 0.0) / 2**20,
            "all_collective_mib": stats.total_collective_bytes / 2**20}


def main() -> None:
    """Print the before/after table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", default="1,8,1", help="data,fsdp,tensor")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "step_collectives.json"))
    args = ap.parse_args()
    mesh = make_mesh(*(int(x) for x in args.mesh.split(",")))
    rows = {}
    print(f"mesh data,fsdp,tensor = {args.mesh}; {sum(np.prod(x.shape) for x in jax.tree.leaves(llama.abstract_params(_model()))) / 1e6:.1f}M params")
    print("| loss | all-gathers per step (per stream -> one) | all-gather MiB/device | all collectives MiB/device |")
    print("|---|---:|---:|---:|")
    for name, loss_cfg in LOSSES.items():
        before, after = (collectives(loss_cfg, mesh, one) for one in (False, True))
        rows[name] = {"per_stream": before, "one_forward": after}
        print(f"| {name} | {before['all_gathers']} -> {after['all_gathers']} | "
              f"{before['all_gather_mib']:.1f} -> {after['all_gather_mib']:.1f} | "
              f"{before['all_collective_mib']:.1f} -> {after['all_collective_mib']:.1f} |")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps({"mesh": args.mesh, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
