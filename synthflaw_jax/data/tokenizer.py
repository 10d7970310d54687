"""Tokenizers: any HF `tokenizer.json` or tokenizer directory, loaded offline; the tiny default.

Everything is loaded with local files only. A tokenizer whose vocabulary does not fit the
model's embedding (`check_vocab_size`) is a `SynthflawError`.
"""
from __future__ import annotations

import functools
import os
import pathlib
from typing import Sequence

from synthflaw_jax.errors import SynthflawError

TINY = "tiny"  # the config value naming the shipped tokenizer
# weight files a tokenizer never needs (skipped when a bucket model directory is named as tokenizer)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")


def tiny_tokenizer_dir() -> pathlib.Path:
    """The shipped tiny tokenizer's directory (`synthflaw_jax/resources/tokenizer/`)."""
    return pathlib.Path(__file__).resolve().parents[1] / "resources" / "tokenizer"


@functools.lru_cache(maxsize=None)
def _load_cached(path: str):
    return _load(path)


def tiny_tokenizer():
    """The shipped 2048-entry byte-level BPE as a `transformers` fast tokenizer (cached)."""
    return _load_cached(str(tiny_tokenizer_dir()))


def _load(path: str):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = pathlib.Path(path)
    try:
        if p.is_file():
            return PreTrainedTokenizerFast(tokenizer_file=str(p))
        if p.is_dir():
            if not any((p / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
                raise SynthflawError(f"{p}: no tokenizer.json, tokenizer_config.json or tokenizer.model in this directory")
            return AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except SynthflawError:
        raise
    except Exception as err:  # transformers raises many types (OSError, ValueError, JSON errors)
        raise SynthflawError(f"{p}: cannot load tokenizer: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    raise SynthflawError(f"{p}: tokenizer path does not exist")


def load_tokenizer(path: str | os.PathLike):
    """A tokenizer from "tiny", a `tokenizer.json` file, or an HF tokenizer/model directory (offline)."""
    if str(path) == TINY:
        return tiny_tokenizer()
    from synthflaw_jax import runtime

    # a bucket path: downloaded once, without the weights when it names a model directory
    path = runtime.local_input(path, "tokenizer", recursive=False, exclude=_WEIGHT_SUFFIXES)
    return _load_cached(str(pathlib.Path(path).expanduser().resolve()))


def vocab_size(tokenizer) -> int:
    """Number of ids the tokenizer can emit (base vocabulary plus added tokens)."""
    return len(tokenizer)


def check_vocab_size(tokenizer, model_vocab_size: int, where: str = "tokenizer") -> None:
    """Raise SynthflawError if the tokenizer can emit ids >= the model's `vocab_size`."""
    n = vocab_size(tokenizer)
    if n > int(model_vocab_size):
        raise SynthflawError(
            f"{where}: vocabulary of {n} tokens is larger than the model's vocab_size {model_vocab_size}"
        )


def encode_many(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, no BOS/EOS added; special-token strings in the text become their ids."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the Rust tokenizer directly: one call for the whole list
        # transformers leaves padding/truncation switched on in the shared backend after a
        # call like tok(texts, padding=True); encode_batch would then pad every text
        if backend.padding is not None:
            backend.no_padding()
        if backend.truncation is not None:
            backend.no_truncation()
        return [enc.ids for enc in backend.encode_batch(list(texts), add_special_tokens=False)]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def special_id(tokenizer, name: str) -> int | None:
    """The id of `bos`/`eos`/`pad`, or None when the tokenizer has none."""
    return getattr(tokenizer, f"{name}_token_id", None)


def pad_id(tokenizer) -> int:
    """Id written into padding: the pad token, else EOS, else 0 (padding is masked out anyway)."""
    for name in ("pad", "eos"):
        i = special_id(tokenizer, name)
        if i is not None:
            return int(i)
    return 0
