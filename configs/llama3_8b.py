"""Llama-3-8B on a TPU v6e-32 slice (32 chips, 8 hosts): unlearn synthetic Q-A (a TOFU-style forget set)
while replaying retained data, with the lower-bounded forgetting loss.

Replace the /data/... placeholders (gs:// bucket paths work everywhere; launch/README.md walks it):
  model.path      a synthflaw checkpoint made by `synthflaw convert hf-to-orbax` from
                  meta-llama/Meta-Llama-3-8B (an HF directory works too)
  data.tokenizer  the tokenizer files: the checkpoint's assets/ (or the HF directory)
  data.streams.*  JSONL files, e.g. TOFU's forget10.json (forget) and retain90.json (replay)
Check the fit before paying for the slice: `synthflaw plan --config configs/llama3_8b.py`
(`--topology ...` to try another slice; scale data.batch_size with the number of chips).
The shared settings and their reasons are in synthflaw_jax/tpu_configs.py.
The forgetting term (docs/unlearn.md) is the smooth lower bound on all answer tokens; to
reach confident template tokens instead, add e.g. --config.loss.bound_form=unlikelihood
--config.loss.forget_scope=pattern (or pass bound_form=/forget_scope= below).
"""
from synthflaw_jax.tpu_configs import tpu_unlearning_config


def get_config():
    """Llama-3-8B on v6e-32."""
    return tpu_unlearning_config(
        arch="llama3_8b",
        model_dir="/data/models/llama-3-8b",
        topology="v6e-32",
        batch_size=128,
    )
