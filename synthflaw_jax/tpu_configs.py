"""The shared body of the real-model configs in configs/: unlearn synthetic Q-A on a TPU slice
(a TOFU-style forget set, replaying retained data, the lower-bounded forgetting loss).

Each configs/<model>.py states only what differs (model, slice, batch, learning rate).
Paths under /data/... are placeholders: launch/README.md copies the data to every worker.
"""
from __future__ import annotations

import ml_collections

from synthflaw_jax.unlearn import default_config


def tpu_unlearning_config(*, arch: str, model_dir: str, topology: str, batch_size: int = 128,
                          learning_rate: float = 1e-5,
                          attention_kernel: str = "pallas_tpu",
                          bound_form: str = "smooth", forget_scope: str = "all",
                          bound_reference: str = "absolute", bound: float = 5.0,
                          tau: float = 0.3) -> ml_collections.ConfigDict:
    """An unlearning config for `arch` (a synthflaw_jax.model_zoo entry) on a TPU `topology`.

    The forgetting term (docs/unlearn.md): `bound_form` "smooth" | "hinge" (per-example NLL
    up to `bound` nats, absolute or, with `bound_reference="reference"`, above the frozen
    model's own NLL) | "unlikelihood" (per token, down to probability `tau`); `forget_scope`
    "all" target tokens or only the forget set's recurring phrases ("pattern")."""
    c = default_config()
    c.model.path = model_dir  # placeholder: converted checkpoint (or HF dir) on every worker
    c.model.arch = arch  # synthflaw_jax.model_zoo entry: `synthflaw plan` builds the model from it
    #                      without weights (a config.json at model.path takes precedence)
    c.model.dtype = "bfloat16"  # compute dtype: bf16 on the MXU
    c.model.param_dtype = "float32"  # fp32 master weights and AdamW moments: small updates survive
    c.model.remat_policy = "full"  # recompute each layer in the backward pass: activations stay small
    c.model.attention_kernel = attention_kernel  # Pallas flash attention on TPU (causal, segment ids)

    c.data.tokenizer = f"{model_dir}/assets"  # placeholder: tokenizer files
    c.data.seq_len = 1024  # packed rows; TOFU Q-A pairs are ~100-300 tokens
    c.data.batch_size = batch_size  # global rows per step, half forget, half replay
    c.data.mixture = "forget=1,replay=1"
    c.data.streams.forget.source = "/data/tofu/forget10.json"  # placeholder: synthetic Q-A to unlearn
    c.data.streams.forget.source_type = "jsonl"
    c.data.streams.forget.format = "qa"
    c.data.streams.replay.source = "/data/tofu/retain90.json"  # placeholder: data whose behaviour we keep
    c.data.streams.replay.source_type = "jsonl"
    c.data.streams.replay.format = "qa"

    c.loss.method = "lower_bounded"  # w_f * l_f + w_r * l_r + w_b * KL(pi_ref || pi_theta)
    c.loss.forget_weight = 1.0
    c.loss.replay_weight = 1.0
    c.loss.bias_weight = 1.0  # needs the frozen reference model: its params are sharded like ours
    # The forgetting term; every choice is also a command-line override, e.g.
    #   --config.loss.bound_form=unlikelihood --config.loss.forget_scope=pattern
    c.loss.bound_form = bound_form  # smooth | hinge (per-example NLL) | unlikelihood (per-token probability)
    c.loss.bound = bound  # lambda: the per-example mean forget NLL stops rising here (nats; NLL forms)
    c.loss.bound_reference = bound_reference  # absolute | reference: lambda counted above the frozen
    #                                           model's own NLL of each example (one more reference forward)
    c.loss.tau = tau  # unlikelihood: a token is pushed down only while its probability is above tau
    c.loss.forget_scope = forget_scope  # all | pattern: only the forget set's recurring opening/closing
    #                                     phrases, found at the start of the run (WORKDIR/pattern.json)

    c.optim.learning_rate = learning_rate
    c.optim.warmup_steps = 10
    c.train.steps = 200
    c.train.grad_accum = 1  # microbatches per step (lax.scan); rows per stream must divide
    c.train.log_every = 10

    c.mesh.data = 1
    c.mesh.fsdp = -1  # FSDP (ZeRO-3) over every chip
    c.mesh.tensor = 1

    c.checkpoint.every = 50
    c.checkpoint.keep = 2

    c.tpu = ml_collections.ConfigDict()
    c.tpu.topology = topology  # the slice this config is sized for: `synthflaw plan`'s default
    return c
