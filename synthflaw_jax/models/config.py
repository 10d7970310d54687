"""The model config: the architecture fields of a Hugging Face `config.json`, plus runtime options.

`ModelConfig.from_hf_dict` reads HF configs of the Llama family (`llama`, `mistral`,
`qwen2`) in both the transformers v4 layout (`rope_theta`, `rope_scaling`) and the v5 layout
(`rope_parameters`), and refuses what the model cannot honour. `to_hf_dict` writes the
original dict back unchanged when there is one, so a round trip keeps every key.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

from synthflaw_jax.errors import SynthflawError

SUPPORTED_MODEL_TYPES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
ATTENTION_KERNELS = ("xla", "reference", "pallas_tpu")


@dataclasses.dataclass
class ModelConfig:
    """Architecture of a Llama-family decoder and how to run it.

    Architecture fields mirror transformers' names. Runtime fields (`dtype`, `param_dtype`,
    `remat_policy`, `attention_kernel`) are ours and never written to `config.json`.
    """

    model_type: str = "llama"
    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 344
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None
    max_position_embeddings: int = 1024
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_type: str = "default"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_position_embeddings: int | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Llama's flag: biases on q, k, v and o
    qkv_bias: bool = False  # Qwen2: biases on q, k, v only
    mlp_bias: bool = False
    sliding_window: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    # runtime options (not part of config.json)
    dtype: str = "float32"  # compute dtype of activations
    param_dtype: str = "float32"
    remat_policy: str = "none"
    attention_kernel: str = "xla"
    hf_dict: dict[str, Any] | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise SynthflawError when the fields describe a model we cannot build or run."""
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise SynthflawError(
                f"model_type {self.model_type!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise SynthflawError(f"config field {name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise SynthflawError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise SynthflawError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.rope_type not in SUPPORTED_ROPE_TYPES:
            raise SynthflawError(
                f"rope type {self.rope_type!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_ROPE_TYPES)})"
            )
        if self.remat_policy not in REMAT_POLICIES:
            raise SynthflawError(f"remat_policy {self.remat_policy!r} is not one of {REMAT_POLICIES}")
        if self.attention_kernel not in ATTENTION_KERNELS:
            raise SynthflawError(
                f"attention_kernel {self.attention_kernel!r} is not one of {ATTENTION_KERNELS}"
            )
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                raise SynthflawError(f"{name} must be float32, bfloat16 or float16")

    @property
    def architecture(self) -> str:
        """The transformers class name for this model type."""
        return SUPPORTED_MODEL_TYPES[self.model_type]

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (runtime options, usually)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ HF I/O
    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config.json", **runtime) -> "ModelConfig":
        """Build from a parsed HF `config.json`; `source` names the file in error messages."""
        if not isinstance(hf, dict):
            raise SynthflawError(f"{source}: expected a JSON object")
        model_type = hf.get("model_type")
        if model_type is None:
            raise SynthflawError(f"{source}: field 'model_type' is missing")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise SynthflawError(
                f"{source}: model_type {model_type!r} is not supported "
                f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
            )
        archs = hf.get("architectures")
        if archs and any(a != SUPPORTED_MODEL_TYPES[model_type] for a in archs):
            raise SynthflawError(
                f"{source}: architectures {archs} not supported for model_type {model_type!r} "
                f"(only {SUPPORTED_MODEL_TYPES[model_type]})"
            )
        act = hf.get("hidden_act", "silu")
        if act != "silu":
            raise SynthflawError(f"{source}: hidden_act {act!r} is not supported (only 'silu')")

        def need(key):
            if key not in hf:
                raise SynthflawError(f"{source}: field {key!r} is missing")
            return hf[key]

        rope = _read_rope(hf, source)
        sliding = _read_sliding_window(hf, model_type, source)
        if hf.get("pretraining_tp", 1) not in (None, 1):
            raise SynthflawError(f"{source}: pretraining_tp != 1 is not supported")
        try:
            cfg = cls(
                model_type=model_type,
                vocab_size=need("vocab_size"),
                hidden_size=need("hidden_size"),
                intermediate_size=need("intermediate_size"),
                num_hidden_layers=need("num_hidden_layers"),
                num_attention_heads=need("num_attention_heads"),
                num_key_value_heads=hf.get("num_key_value_heads") or need("num_attention_heads"),
                head_dim=hf.get("head_dim"),
                max_position_embeddings=hf.get("max_position_embeddings", 2048),
                rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
                tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
                attention_bias=bool(hf.get("attention_bias", False)) if model_type == "llama" else False,
                qkv_bias=model_type == "qwen2",
                mlp_bias=bool(hf.get("mlp_bias", False)) if model_type == "llama" else False,
                sliding_window=sliding,
                bos_token_id=hf.get("bos_token_id"),
                eos_token_id=hf.get("eos_token_id"),
                pad_token_id=hf.get("pad_token_id"),
                hf_dict=dict(hf),
                **rope,
                **runtime,
            )
        except SynthflawError as err:
            raise SynthflawError(f"{source}: {err}") from None
        except TypeError as err:
            raise SynthflawError(f"{source}: {err}") from None
        return cfg

    def to_hf_dict(self) -> dict[str, Any]:
        """The HF `config.json` dict: the original one if we read it, else one built from fields."""
        if self.hf_dict is not None:
            return dict(self.hf_dict)
        rope_parameters: dict[str, Any] = {"rope_type": self.rope_type, "rope_theta": self.rope_theta}
        if self.rope_type in ("linear", "llama3"):
            rope_parameters["factor"] = self.rope_factor
        if self.rope_type == "llama3":
            rope_parameters.update(
                low_freq_factor=self.rope_low_freq_factor,
                high_freq_factor=self.rope_high_freq_factor,
                original_max_position_embeddings=self.rope_original_max_position_embeddings,
            )
        out: dict[str, Any] = {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope_parameters,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "dtype": self.param_dtype,
        }
        if self.model_type == "llama":
            out.update(attention_bias=self.attention_bias, mlp_bias=self.mlp_bias)
        if self.model_type == "mistral":
            out["sliding_window"] = self.sliding_window
        if self.model_type == "qwen2":
            out.update(use_sliding_window=False, sliding_window=None)
        return out

    @classmethod
    def from_file(cls, path: str | pathlib.Path, **runtime) -> "ModelConfig":
        """Read an HF `config.json` file (or a directory holding one)."""
        path = pathlib.Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise SynthflawError(f"{path}: config.json not found")
        try:
            hf = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SynthflawError(f"{path}: malformed JSON ({err})") from None
        return cls.from_hf_dict(hf, source=str(path), **runtime)

    def num_params(self) -> int:
        """Parameter count of the model this config describes."""
        d, f, h, kv, hd, L = (self.hidden_size, self.intermediate_size, self.num_attention_heads,
                              self.num_key_value_heads, self.head_dim, self.num_hidden_layers)
        attn = d * h * hd * 2 + d * kv * hd * 2
        if self.attention_bias:
            attn += h * hd + 2 * kv * hd + d
        elif self.qkv_bias:
            attn += h * hd + 2 * kv * hd
        mlp = 3 * d * f + (2 * f + d if self.mlp_bias else 0)
        per_layer = attn + mlp + 2 * d
        head = 0 if self.tie_word_embeddings else d * self.vocab_size
        return self.vocab_size * d + L * per_layer + d + head


def _read_rope(hf: dict[str, Any], source: str) -> dict[str, Any]:
    """Rope fields from either `rope_parameters` (transformers v5) or `rope_scaling` (v4)."""
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and params and all(isinstance(v, dict) for v in params.values()):
        raise SynthflawError(f"{source}: per-layer-type rope_parameters are not supported")
    scaling = hf.get("rope_scaling")
    merged: dict[str, Any] = {}
    if isinstance(scaling, dict):
        merged.update(scaling)
    if isinstance(params, dict):
        merged.update(params)
    theta = merged.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = merged.get("rope_type", merged.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise SynthflawError(
            f"{source}: rope type {rope_type!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ROPE_TYPES)})"
        )
    if merged.get("partial_rotary_factor", 1.0) != 1.0:
        raise SynthflawError(f"{source}: partial_rotary_factor != 1 is not supported")
    out: dict[str, Any] = {"rope_theta": float(theta), "rope_type": rope_type}
    if rope_type in ("linear", "llama3"):
        if "factor" not in merged:
            raise SynthflawError(f"{source}: rope type {rope_type!r} needs field 'factor'")
        out["rope_factor"] = float(merged["factor"])
    if rope_type == "llama3":
        for key in ("low_freq_factor", "high_freq_factor"):
            if key not in merged:
                raise SynthflawError(f"{source}: rope type 'llama3' needs field {key!r}")
        out["rope_low_freq_factor"] = float(merged["low_freq_factor"])
        out["rope_high_freq_factor"] = float(merged["high_freq_factor"])
        out["rope_original_max_position_embeddings"] = int(
            merged.get("original_max_position_embeddings", hf.get("max_position_embeddings", 2048))
        )
    return out


def _read_sliding_window(hf: dict[str, Any], model_type: str, source: str) -> int | None:
    """The sliding window every layer uses, or None; refuses per-layer mixes we cannot scan."""
    if model_type == "llama":
        return None
    if model_type == "mistral":
        window = hf.get("sliding_window")
        return int(window) if window else None
    # qwen2: sliding attention only on some layers when use_sliding_window is set
    layer_types = hf.get("layer_types")
    uses = bool(hf.get("use_sliding_window", False)) or (
        bool(layer_types) and "sliding_attention" in layer_types
    )
    if not uses:
        return None
    raise SynthflawError(
        f"{source}: qwen2 with use_sliding_window=true (sliding attention on a subset of layers) "
        "is not supported by the scanned model"
    )


def llama3_inv_freq_scale(cfg: ModelConfig, inv_freq):
    """Apply Llama 3.1's frequency-dependent rope scaling to `inv_freq` (numpy or jax array)."""
    import numpy as np

    old_len = cfg.rope_original_max_position_embeddings
    low_wavelen = old_len / cfg.rope_low_freq_factor
    high_wavelen = old_len / cfg.rope_high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / cfg.rope_factor, inv_freq)
    smooth = (old_len / wavelen - cfg.rope_low_freq_factor) / (
        cfg.rope_high_freq_factor - cfg.rope_low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / cfg.rope_factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled)
