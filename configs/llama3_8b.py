"""Llama-3-8B on a TPU v6e-32 slice (32 chips, 8 hosts): unlearn synthetic Q-A
(a TOFU-style forget set) while replaying retained data, with the lower-bounded forgetting loss.

Replace the /data/... placeholders (launch/README.md copies them to every worker):
  model.path      a synthflaw checkpoint made by `synthflaw convert hf-to-orbax` from
                  meta-llama/Meta-Llama-3-8B (an HF directory works too)
  data.tokenizer  the tokenizer files: the checkpoint's assets/ (or the HF directory)
  data.streams.*  JSONL files, e.g. TOFU's forget10.json (forget) and retain90.json (replay)
Check the fit before paying for the slice: `synthflaw plan --config configs/llama3_8b.py`
(`--topology ...` to try another slice; scale data.batch_size with the number of chips).
"""
import ml_collections

from synthflaw_jax.unlearn import default_config


def get_config():
    """Defaults from synthflaw_jax.unlearn.default_config(), sized for Llama-3-8B on v6e-32."""
    c = default_config()
    c.model.path = "/data/models/llama-3-8b"  # placeholder: converted checkpoint (or HF dir) on every worker
    c.model.arch = "llama3_8b"  # synthflaw_jax.model_zoo entry: `synthflaw plan` builds the model from it
    #                          without weights (a config.json at model.path takes precedence)
    c.model.dtype = "bfloat16"  # compute dtype: bf16 on the MXU
    c.model.param_dtype = "float32"  # fp32 master weights and AdamW moments: small updates survive
    c.model.remat_policy = "full"  # recompute each layer in the backward pass: activations stay small
    c.model.attention_kernel = "pallas_tpu"  # Pallas flash attention on TPU (causal, segment ids)

    c.data.tokenizer = "/data/models/llama-3-8b/assets"  # placeholder: tokenizer files
    c.data.seq_len = 1024  # packed rows; TOFU Q-A pairs are ~100-300 tokens
    c.data.batch_size = 128  # global rows per step: 4 per batch shard (data x fsdp), half forget, half replay
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
    c.loss.bound = 5.0  # lambda: the per-example mean forget NLL stops rising here (nats)

    c.optim.learning_rate = 1e-5
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
    c.tpu.topology = "v6e-32"  # the slice this config is sized for: `synthflaw plan`'s default
    return c
