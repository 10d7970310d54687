"""GGUF (llama.cpp's single-file format) -> our Orbax checkpoint or a Hugging Face directory.

A GGUF file holds the architecture as metadata, the tokenizer (vocabulary, merges, special
ids, chat template) as metadata, and the weights as tensors that may be quantized in blocks.
We read it with the `gguf` package that llama.cpp publishes: its reader memory-maps the file,
and we dequantize one tensor at a time to float32 (every GGML type that `gguf.quants` can
dequantize: F32/F16/BF16, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, the K-quants, ...), rename it to its
Hugging Face name and hand it to the same streaming writers as the HF path, so the model is
never whole in host memory.

Two facts of the format matter:
- llama.cpp stores a tensor's shape fastest-dimension first; the data of a `[cols, rows]`
  GGUF tensor is a row-major `(rows, cols)` array, i.e. already in torch's `[out, in]` order.
- llama.cpp's converter permutes the rows of `attn_q` / `attn_k` within each head (it pairs
  rotary dimensions as (0, 1), (2, 3), ... where HF pairs (i, i + head_dim/2)); we undo it.

The tokenizer is rebuilt with transformers' own GGUF tokenizer builders (torch-free) and
saved as `tokenizer.json` + `tokenizer_config.json` (with the chat template).
"""
from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models.config import ModelConfig

SUPPORTED_ARCHITECTURES = ("llama",)

# GGUF tensor name (per layer with {i}) -> HF tensor name
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def hf_name(gguf_name: str) -> str | None:
    """The HF name of a GGUF tensor name, or None for a name we do not know."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER_NAMES:
        return f"model.layers.{int(parts[1])}.{_LAYER_NAMES[parts[2]]}.{parts[3]}"
    return None


def unpermute_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head row permutation of a q/k projection (rows = n_heads * head_dim).

    llama.cpp wrote rows as `w.reshape(n, 2, hd/2, ...).swapaxes(1, 2)`; this is its inverse."""
    rows = weight.shape[0]
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


class GGUFFile:
    """A GGUF file opened for reading: metadata, config and one HF-named tensor at a time.

    Quacks like `hf_weights.SafetensorsReader` (`names`, `shape`, `get`, `location`) so the
    HF path's streaming readers work on it unchanged."""

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        if not self.path.is_file():
            raise SynthflawError(f"{self.path}: no such GGUF file")
        try:
            from gguf import GGUFReader
        except ImportError:  # pinned in install_requires; this guards a broken environment
            raise SynthflawError("reading GGUF needs the `gguf` package (pip install gguf==0.19.0)") from None
        try:
            self._reader = GGUFReader(str(self.path), "r")
        except Exception as err:  # the reader raises ValueError/struct.error/IndexError/... for damage
            raise SynthflawError(f"{self.path}: not a readable GGUF file ({_one_line(err)})") from None
        self._check_size()
        arch = self.field("general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise SynthflawError(f"{self.path}: GGUF architecture {arch!r} is not supported "
                                 f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
        self.arch = arch
        self._tensors = {}
        for tensor in self._reader.tensors:
            name = hf_name(tensor.name)
            if name is None:
                raise SynthflawError(f"{self.path}: tensor {tensor.name!r} has no Llama counterpart "
                                     "(rope_freqs / other architectures are not supported)")
            self._tensors[name] = tensor
        self.hf_config = self._hf_config()
        self.config = ModelConfig.from_hf_dict(self.hf_config, source=str(self.path))
        self.location = {name: self.path for name in self._tensors}

    # ------------------------------------------------------------------ metadata
    def field(self, key: str, default: Any = None) -> Any:
        """One metadata value (strings decoded, arrays as lists), or `default` when absent."""
        field = self._reader.fields.get(key)
        if field is None:
            return default
        try:
            return field.contents()
        except Exception as err:
            raise SynthflawError(f"{self.path}: metadata field {key!r} is unreadable ({_one_line(err)})") from None

    def _need(self, key: str) -> Any:
        value = self.field(key)
        if value is None:
            raise SynthflawError(f"{self.path}: metadata field {key!r} is missing")
        return value

    def _check_size(self) -> None:
        size = self.path.stat().st_size
        for tensor in self._reader.tensors:
            end = int(tensor.data_offset) + int(tensor.n_bytes)
            if end > size or tensor.data.nbytes != tensor.n_bytes:
                raise SynthflawError(f"{self.path}: truncated GGUF file ({size} bytes, tensor "
                                     f"{tensor.name!r} needs {end})")

    def _hf_config(self) -> dict[str, Any]:
        a = self.arch
        heads = int(self._need(f"{a}.attention.head_count"))
        hidden = int(self._need(f"{a}.embedding_length"))
        tokens = self.field("tokenizer.ggml.tokens")
        vocab = self.field(f"{a}.vocab_size") or (len(tokens) if tokens else None)
        if vocab is None:
            raise SynthflawError(f"{self.path}: neither {a}.vocab_size nor tokenizer.ggml.tokens is present")
        head_dim = self.field(f"{a}.attention.key_length") or self.field(f"{a}.rope.dimension_count") or hidden // heads
        hf = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": int(vocab),
            "hidden_size": hidden,
            "intermediate_size": int(self._need(f"{a}.feed_forward_length")),
            "num_hidden_layers": int(self._need(f"{a}.block_count")),
            "num_attention_heads": heads,
            "num_key_value_heads": int(self.field(f"{a}.attention.head_count_kv", heads)),
            "head_dim": int(head_dim),
            "max_position_embeddings": int(self.field(f"{a}.context_length", 2048)),
            "rms_norm_eps": float(self.field(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)),
            "rope_theta": float(self.field(f"{a}.rope.freq_base", 10000.0)),
            "tie_word_embeddings": "lm_head.weight" not in self._tensors,
            "attention_bias": False,
            "mlp_bias": False,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        }
        scaling = self.field(f"{a}.rope.scaling.type")
        if scaling not in (None, "none"):
            if scaling != "linear":
                raise SynthflawError(f"{self.path}: rope scaling {scaling!r} is not supported (supported: linear)")
            hf["rope_scaling"] = {"rope_type": "linear", "factor": float(self._need(f"{a}.rope.scaling.factor"))}
        for key, name in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                          ("pad_token_id", "padding_token_id")):
            value = self.field(f"tokenizer.ggml.{name}")
            if value is not None:
                hf[key] = int(value)
        return hf

    # ------------------------------------------------------------------ tensors
    def names(self) -> list[str]:
        """HF names of every tensor in the file."""
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        """HF (torch-order) shape of one tensor, from the header."""
        return tuple(int(n) for n in reversed(self._tensors[name].shape.tolist()))

    def ggml_type(self, name: str) -> str:
        """The GGML storage type of one tensor (F32, Q4_1, ...)."""
        return self._tensors[name].tensor_type.name

    def get(self, name: str) -> np.ndarray:
        """One tensor under its HF name and layout, dequantized to float32."""
        from gguf import GGMLQuantizationType, quants

        if name not in self._tensors:
            raise SynthflawError(f"{self.path}: tensor {name!r} is missing from the GGUF file")
        tensor = self._tensors[name]
        qtype = tensor.tensor_type
        try:
            if qtype == GGMLQuantizationType.BF16 and tensor.data.dtype != np.uint8:
                out = quants.dequantize(tensor.data.view(np.uint8), qtype)
            else:
                out = quants.dequantize(tensor.data, qtype)
        except NotImplementedError:
            raise SynthflawError(f"{self.path}: tensor {tensor.name!r} uses quantization {qtype.name}, "
                                 "which the gguf package cannot dequantize") from None
        out = np.asarray(out, dtype=np.float32).reshape(self.shape(name))
        cfg = self.config
        if name.endswith("self_attn.q_proj.weight"):
            out = unpermute_rows(out, cfg.num_attention_heads)
        elif name.endswith("self_attn.k_proj.weight"):
            out = unpermute_rows(out, cfg.num_key_value_heads)
        return np.ascontiguousarray(out)

    def quantization_summary(self) -> dict[str, int]:
        """{GGML type name: number of tensors stored in it}."""
        counts: dict[str, int] = {}
        for tensor in self._tensors.values():
            counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
        return counts

    # ------------------------------------------------------------------ tokenizer
    def tokenizer_fields(self) -> tuple[dict, dict]:
        """(tokenizer_dict, tokenizer_config) in the shape transformers' GGUF builders take."""
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, _SPECIAL_TOKENS

        grouped = {group: {name: self.field(f"tokenizer.{key}") for key, name in renames.items()
                           if f"tokenizer.{key}" in self._reader.fields}
                   for group, renames in GGUF_TOKENIZER_MAPPING.items()}
        tokenizer, config = grouped["tokenizer"], grouped["tokenizer_config"]
        if "tokens" not in tokenizer:
            raise SynthflawError(f"{self.path}: no tokenizer in the GGUF file (tokenizer.ggml.tokens missing)")
        if tokenizer.get("tokenizer_type") == "llama":
            config.setdefault("add_bos_token", True)  # llama.cpp's default for sentencepiece vocabularies
        for name, key in _SPECIAL_TOKENS.items():
            token_id = self.field(f"tokenizer.ggml.{key}")
            config[name] = tokenizer["tokens"][token_id] if token_id is not None else None
        return tokenizer, config

    def save_tokenizer(self, out_dir: pathlib.Path) -> None:
        """Write tokenizer.json, tokenizer_config.json (chat template included), generation_config.json."""
        from transformers import PreTrainedTokenizerFast
        from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

        tokenizer_dict, config = self.tokenizer_fields()
        try:
            backend, extra = convert_gguf_tokenizer(self.arch, tokenizer_dict)
        except Exception as err:
            raise SynthflawError(f"{self.path}: cannot build its tokenizer ({_one_line(err)})") from None
        config = {k: v for k, v in {**config, **extra}.items() if v is not None}
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **config)
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(out_dir))
        generation = {k: self.hf_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                      if k in self.hf_config}
        (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


# --------------------------------------------------------------------------- conversions
def _check_complete(gguf: GGUFFile) -> None:
    from synthflaw_jax import hf_weights

    hf_weights.check_against_config(gguf, gguf.config, str(gguf.path))


def gguf_to_orbax(gguf_path, ckpt_dir, dtype: str | None = None, mesh=None, overwrite: bool = False,
                  progress: bool = True) -> pathlib.Path:
    """Convert a Llama-family GGUF file to our Orbax model checkpoint, one tensor at a time."""
    from synthflaw_jax import convert, hf_weights, outputs

    gguf = GGUFFile(gguf_path)
    ckpt_dir = outputs.check(ckpt_dir, overwrite, inputs=[gguf.path])
    _check_complete(gguf)
    cfg = gguf.config
    if dtype:
        cfg = convert._with_dtype(cfg, dtype)
    with outputs.directory(ckpt_dir, overwrite, inputs=[gguf.path]) as tmp:
        params = hf_weights.iter_params(gguf, cfg, convert._placer(cfg, mesh), dtype=dtype, progress=progress)
        convert._stream_params_to_orbax(params, tmp / "params")
        convert._write_json(tmp / "config.json", cfg.to_hf_dict())
        gguf.save_tokenizer(tmp / "assets")
        convert._write_json(tmp / convert.MARKER, {"format": "synthflaw-model", "version": convert.FORMAT_VERSION})
    return ckpt_dir


def gguf_to_hf(gguf_path, hf_dir, dtype: str | None = None, overwrite: bool = False,
               max_shard_bytes: int = 5 * 2**30, progress: bool = True) -> pathlib.Path:
    """Convert a Llama-family GGUF file to an HF directory (config, safetensors, tokenizer)."""
    from synthflaw_jax import convert, hf_weights, outputs

    gguf = GGUFFile(gguf_path)
    hf_dir = outputs.check(hf_dir, overwrite, inputs=[gguf.path])
    _check_complete(gguf)
    cfg = gguf.config
    maps = {m.path: m for m in hf_weights.tensor_maps(cfg)}

    def load(path):  # one stacked parameter (all layers of one tensor) in our layout
        m = maps[path]
        names = hf_weights._hf_names(m, cfg.num_hidden_layers)
        if not m.layered:
            return m.to_ours(gguf.get(names[0]))
        return np.stack([m.to_ours(gguf.get(name)) for name in names])

    dtypes: dict = {}
    for path in maps:
        hf_weights._set(dtypes, path, np.dtype(np.float32))
    lazy = hf_weights.LazyParams(load, dtypes)
    with outputs.directory(hf_dir, overwrite, inputs=[gguf.path]) as tmp:
        if dtype:
            cfg = convert._with_dtype(cfg, dtype)
        hf_weights.write_safetensors(lazy, cfg, tmp, max_shard_bytes, dtype, progress)
        convert._write_json(tmp / "config.json", cfg.to_hf_dict())
        gguf.save_tokenizer(tmp)
    return hf_dir


def convert_cli(args, mesh=None, max_shard_bytes: int = 5 * 2**30) -> pathlib.Path:
    """`synthflaw convert gguf-to-orbax|gguf-to-hf`: `args.gguf_file` may be a named model."""
    from synthflaw_jax import named_models, runtime

    source = (named_models.gguf_file(args.gguf_file) if named_models.is_named(args.gguf_file)
              else runtime.local_input(args.gguf_file, "GGUF file"))  # a bucket file: downloaded first
    progress = not args.no_progress
    if args.direction == "gguf-to-orbax":
        return gguf_to_orbax(source, args.ckpt_dir, dtype=args.dtype, mesh=mesh, overwrite=args.overwrite,
                             progress=progress)
    return gguf_to_hf(source, args.hf_dir, dtype=args.dtype, overwrite=args.overwrite,
                      max_shard_bytes=max_shard_bytes, progress=progress)
