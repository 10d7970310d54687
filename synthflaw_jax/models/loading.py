"""`synthflaw_jax.load(path)`: an HF directory or one of our checkpoints, ready to run."""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp

from synthflaw_jax import convert
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models import llama
from synthflaw_jax.models.config import ModelConfig

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclasses.dataclass
class LoadedModel:
    """A model ready to run: `.config`, `.params`, `.logits(...)`, `.hidden_states(...)`, `.tokenizer`,
    `.generate(prompts, max_new_tokens)`."""

    config: ModelConfig
    params: Any
    path: pathlib.Path | None = None
    assets_dir: pathlib.Path | None = None
    mesh: Any = None

    @functools.cached_property
    def _apply(self):
        model = llama.CausalLM(self.config, self.mesh)

        # one output per compiled program, so XLA drops the unused head (hidden states skip the
        # [tokens, vocab] matmul)
        @functools.partial(jax.jit, static_argnums=0)
        def apply(output, params, input_ids, positions, segment_ids):
            logits, hidden, _ = model.apply({"params": params}, input_ids, positions, segment_ids)
            return logits if output == "logits" else hidden.astype(jnp.float32)

        return apply

    def _run(self, output: str, input_ids, attention_mask):
        input_ids = jnp.asarray(input_ids, jnp.int32)
        if input_ids.ndim != 2:
            raise SynthflawError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        if int(jnp.max(input_ids, initial=0)) >= self.config.vocab_size or int(jnp.min(input_ids, initial=0)) < 0:
            raise SynthflawError(f"input_ids contain ids outside the vocabulary [0, {self.config.vocab_size})")
        positions, segment_ids = positions_from_mask(input_ids, attention_mask)
        return self._apply(output, self.params, input_ids, positions, segment_ids)

    def logits(self, input_ids, attention_mask=None) -> jax.Array:
        """float32 logits [batch, seq, vocab]; `attention_mask` (1 = token, 0 = padding, left or
        right) sets positions and keeps padding out of attention."""
        return self._run("logits", input_ids, attention_mask)

    def hidden_states(self, input_ids, attention_mask=None) -> jax.Array:
        """float32 final (normed) hidden states [batch, seq, hidden]."""
        return self._run("hidden", input_ids, attention_mask)

    def generate(self, prompts: list[str], max_new_tokens: int = 256, **sampling) -> list[str]:
        """One completion per prompt (greedy by default) with the KV-cache decoder; `sampling`
        takes `temperature`, `top_k`, `top_p`, `seed`, `chat_template`, `batch_size`
        (see `synthflaw_jax.models.generate.generate_text`)."""
        from synthflaw_jax.models.generate import generate_text

        return generate_text(self, prompts, max_new_tokens, **sampling)

    @functools.cached_property
    def tokenizer(self):
        """The HF tokenizer shipped with the model (None when there is none)."""
        if self.assets_dir is None or not any((self.assets_dir / f).exists() for f in _TOKENIZER_FILES):
            return None
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(self.assets_dir), local_files_only=True)
        except Exception as err:  # transformers raises many types for bad tokenizer files
            raise SynthflawError(f"{self.assets_dir}: cannot load tokenizer ({' '.join(str(err).split())[:200]})") from None


def positions_from_mask(input_ids, attention_mask=None):
    """(positions, segment_ids) from a 0/1 padding mask: positions count real tokens from 0."""
    if attention_mask is None:
        mask = jnp.ones(input_ids.shape, jnp.int32)
    else:
        mask = jnp.asarray(attention_mask, jnp.int32)
        if mask.shape != input_ids.shape:
            raise SynthflawError(f"attention_mask shape {tuple(mask.shape)} != input_ids shape {tuple(input_ids.shape)}")
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    return positions, mask


def load(path: str | os.PathLike, mesh=None, dtype: str | None = None, **runtime) -> LoadedModel:
    """Load an HF directory (config.json + safetensors), a checkpoint written by this project,
    or a named model (`synthflaw_jax.named_models`, e.g. "smollm2-135m-instruct").

    `mesh` places every parameter with its sharding; `dtype` casts the stored parameters;
    runtime options (`remat_policy`, `attention_kernel`, compute `dtype` via `compute_dtype`)
    go to the model config."""
    from synthflaw_jax import named_models

    path = pathlib.Path(named_models.resolve(path))  # a named model -> its converted cache dir
    if "compute_dtype" in runtime:
        runtime["dtype"] = runtime.pop("compute_dtype")
    if not path.exists():
        raise SynthflawError(f"{path}: no such file or directory")
    if convert.is_model_checkpoint(path):
        cfg, params = convert.load_model_checkpoint(path, mesh=mesh, **runtime)
        if dtype:
            params = jax.tree.map(lambda x: x.astype(dtype), params)
        assets = path / "assets"
    elif convert.is_hf_dir(path):
        cfg, params = convert.load_hf(path, mesh=mesh, dtype=dtype, progress=False, **runtime)
        assets = path
    else:
        raise SynthflawError(f"{path}: neither an HF model directory (config.json) nor a synthflaw checkpoint")
    return LoadedModel(cfg, params, path=path, assets_dir=assets if assets.is_dir() else None, mesh=mesh)


def random_model(cfg: ModelConfig, seed: int = 0, mesh=None) -> LoadedModel:
    """A randomly initialised model (tests, demos)."""
    return LoadedModel(cfg, llama.init_params(cfg, jax.random.key(seed), mesh), mesh=mesh)

