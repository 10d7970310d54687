"""Published architectures of the real models our configs target, as HF `config.json` dicts.

`synthflaw plan` builds a model from these without any weights (`model.arch` in a config names
one), and the tests check each against its published parameter count. The dicts hold the
fields of the models' own `config.json` files on the Hugging Face Hub (architecture fields
only; token ids as published). `PUBLISHED_PARAMS` is the count each model card or paper states.
"""
from __future__ import annotations

from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models.config import ModelConfig


def _llama2(hidden, inter, layers, heads, kv_heads):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "hidden_act": "silu",
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }


def _llama3(hidden, inter, layers, heads):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": 8, "hidden_act": "silu",
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": 128001,
    }


# name -> HF config.json dict (meta-llama/Llama-2-*-hf, meta-llama/Meta-Llama-3-*,
# mistralai/Mistral-7B-v0.1, Qwen/Qwen2-7B on the Hugging Face Hub)
ARCHS: dict[str, dict] = {
    "llama2_7b": _llama2(4096, 11008, 32, 32, 32),
    "llama2_13b": _llama2(5120, 13824, 40, 40, 40),
    "llama2_70b": _llama2(8192, 28672, 80, 64, 8),
    "llama3_8b": _llama3(4096, 14336, 32, 32),
    "llama3_70b": _llama3(8192, 28672, 80, 64),
    "mistral_7b": {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 32000,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_act": "silu",
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "sliding_window": 4096, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    },
    "qwen2_7b": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 152064,
        "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu",
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "use_sliding_window": False, "sliding_window": 131072, "tie_word_embeddings": False,
        "bos_token_id": 151643, "eos_token_id": 151643,
    },
}

# Parameter counts as published (model cards / papers), for the 1% check in the tests.
PUBLISHED_PARAMS: dict[str, float] = {
    "llama2_7b": 6.74e9,     # Llama 2 paper, Table 1 / HF card ("7B", 6,738,415,616)
    "llama2_13b": 13.0e9,    # 13,015,864,320
    "llama2_70b": 69.0e9,    # 68,976,648,192
    "llama3_8b": 8.03e9,     # HF card "8.03B params"
    "llama3_70b": 70.6e9,    # HF card "70.6B params"
    "mistral_7b": 7.24e9,    # Mistral 7B paper / HF card "7.24B params"
    "qwen2_7b": 7.62e9,      # Qwen2 technical report / HF card "7.62B params"
}


def names() -> list[str]:
    """The architecture names this zoo knows."""
    return sorted(ARCHS)


def hf_config(name: str) -> dict:
    """A copy of the HF config dict of architecture `name`."""
    if name not in ARCHS:
        raise SynthflawError(f"model arch {name!r} is not known (known: {', '.join(names())})")
    return dict(ARCHS[name])


def model_config(name: str, **runtime) -> ModelConfig:
    """The ModelConfig of architecture `name` with runtime options (dtype, remat_policy, ...)."""
    return ModelConfig.from_hf_dict(hf_config(name), source=f"model_zoo[{name}]", **runtime)
