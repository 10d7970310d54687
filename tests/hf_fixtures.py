"""Tiny random Hugging Face models built with transformers + torch (no downloads)."""
from __future__ import annotations

import pathlib

import numpy as np

BASE = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

# name -> (transformers config class name, extra config fields)
VARIANTS = {
    "llama_untied": ("LlamaConfig", dict(tie_word_embeddings=False)),
    "llama_tied": ("LlamaConfig", dict(tie_word_embeddings=True)),
    "llama3_rope": ("LlamaConfig", dict(
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8},
    )),
    "llama_bias": ("LlamaConfig", dict(attention_bias=True, mlp_bias=True, head_dim=32)),
    "mistral": ("MistralConfig", dict(sliding_window=5, tie_word_embeddings=False)),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=False)),
}

_MODEL_CLASSES = {"LlamaConfig": "LlamaForCausalLM", "MistralConfig": "MistralForCausalLM",
                  "Qwen2Config": "Qwen2ForCausalLM"}


def build_hf_model(variant: str, seed: int = 0, dtype: str = "float32", **overrides):
    """A transformers model of this variant with random weights large enough to matter
    (`overrides` replace config fields, e.g. a longer max_position_embeddings)."""
    import torch
    import transformers

    cls_name, extra = VARIANTS[variant]
    config = getattr(transformers, cls_name)(**{**BASE, **extra, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, _MODEL_CLASSES[cls_name])(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.eval()
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
    return model


def save_hf_model(model, out: pathlib.Path, max_shard_size: str | None = None) -> pathlib.Path:
    """save_pretrained as safetensors (sharded when max_shard_size is given)."""
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(out), **kwargs)
    return out


def padded_batch(vocab: int, seed: int = 0):
    """input_ids, attention_mask with one left-padded, one right-padded and one full row."""
    rng = np.random.default_rng(seed)
    length = 12
    ids = rng.integers(3, vocab, size=(3, length)).astype(np.int64)
    mask = np.ones((3, length), np.int64)
    mask[0, :4] = 0  # left padding
    mask[1, 9:] = 0  # right padding
    ids[mask == 0] = 0
    return ids, mask


def hf_logits(model, ids, mask) -> np.ndarray:
    """transformers' float32 logits with positions counted over real tokens (as ours)."""
    import torch

    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(positions),
        )
    return out.logits.float().numpy()
