"""Llama-2-70B on a TPU v5p-128 slice (64 chips, 16 hosts): unlearn synthetic Q-A (a TOFU-style forget set)
while replaying retained data, with the lower-bounded forgetting loss.

Replace the /data/... placeholders (gs:// bucket paths work everywhere; launch/README.md walks it):
  model.path      a synthflaw checkpoint made by `synthflaw convert hf-to-orbax` from
                  meta-llama/Llama-2-70b-hf (an HF directory works too)
  data.tokenizer  the tokenizer files: the checkpoint's assets/ (or the HF directory)
  data.streams.*  JSONL files, e.g. TOFU's forget10.json (forget) and retain90.json (replay)
Check the fit before paying for the slice: `synthflaw plan --config configs/llama2_70b.py`
(`--topology ...` to try another slice; scale data.batch_size with the number of chips).
The shared settings and their reasons are in synthflaw_jax/tpu_configs.py.
The forgetting term (docs/unlearn.md) is the smooth lower bound on all answer tokens; to
reach confident template tokens instead, add e.g. --config.loss.bound_form=unlikelihood
--config.loss.forget_scope=pattern (or pass bound_form=/forget_scope= below).
"""
from synthflaw_jax.tpu_configs import tpu_unlearning_config


def get_config():
    """Llama-2-70B on v5p-128."""
    return tpu_unlearning_config(
        arch="llama2_70b",
        model_dir="/data/models/llama-2-70b",
        topology="v5p-128",
        batch_size=128,
        learning_rate=5e-06,
    )
