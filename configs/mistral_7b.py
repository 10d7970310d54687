"""Mistral-7B on a TPU v5e-64 slice (64 chips, 16 hosts): unlearn synthetic Q-A (a TOFU-style forget set)
while replaying retained data, with the lower-bounded forgetting loss.

Replace the /data/... placeholders (gs:// bucket paths work everywhere; launch/README.md walks it):
  model.path      a synthflaw checkpoint made by `synthflaw convert hf-to-orbax` from
                  mistralai/Mistral-7B-v0.1 (an HF directory works too)
  data.tokenizer  the tokenizer files: the checkpoint's assets/ (or the HF directory)
  data.streams.*  JSONL files, e.g. TOFU's forget10.json (forget) and retain90.json (replay)
Check the fit before paying for the slice: `synthflaw plan --config configs/mistral_7b.py`
(`--topology ...` to try another slice; scale data.batch_size with the number of chips).
The shared settings and their reasons are in synthflaw_jax/tpu_configs.py.
The forgetting term (docs/unlearn.md) is the smooth lower bound on all answer tokens; to
reach confident template tokens instead, add e.g. --config.loss.bound_form=unlikelihood
--config.loss.forget_scope=pattern (or pass bound_form=/forget_scope= below).

Mistral's 4096-token sliding window never binds at seq_len 1024, but the model still carries it,
and the Pallas kernel does not take a sliding window: XLA attention.
"""
from synthflaw_jax.tpu_configs import tpu_unlearning_config


def get_config():
    """Mistral-7B on v5e-64."""
    return tpu_unlearning_config(
        arch="mistral_7b",
        model_dir="/data/models/mistral-7b",
        topology="v5e-64",
        batch_size=128,
        attention_kernel="xla",
    )
