"""Feeding documents to a model: tokenizer checks and length-sorted, right-padded batches.

The model object follows `synthflaw_jax.load`'s interface: `.config.vocab_size`,
`.logits(ids, mask) -> [B, T, V]`, `.hidden_states(ids, mask) -> [B, T, D]`.
Batches are right-padded (a causal model's real tokens never see the padding) to a
power-of-two length and to a full batch, so a jitted model compiles few shapes.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np

from synthflaw_jax.errors import SynthflawError


class Batch(NamedTuple):
    """Rows `index` of the input (original positions), their ids/mask [B, T]; rows past len(index) are filler."""

    index: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray


def check_tokenizer(model, tokenizer, what: str = "model") -> None:
    """Raise SynthflawError when there is no tokenizer or it has more ids than the model's vocabulary."""
    if tokenizer is None:
        raise SynthflawError(f"{what}: no tokenizer found next to the checkpoint; it is needed to encode text")
    vocab_size = int(model.config.vocab_size)
    if len(tokenizer) > vocab_size:
        raise SynthflawError(
            f"{what}: tokenizer has {len(tokenizer)} tokens but config.vocab_size is {vocab_size}"
        )


def bucket_length(n: int, max_len: int) -> int:
    """The smallest power of two >= n (at least 8), capped at max_len."""
    length = 8
    while length < n:
        length *= 2
    return min(length, max_len)


def encode(tokenizer, texts: Sequence[str], max_len: int, vocab_size: int | None = None) -> list[list[int]]:
    """Token ids of each text (with the tokenizer's special tokens), truncated to max_len."""
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_len)["input_ids"]
    ids = [list(x) for x in ids]
    if vocab_size is not None:
        top = max((max(x) for x in ids if x), default=-1)
        if top >= vocab_size:
            raise SynthflawError(f"tokenizer produced id {top} >= the model's vocab_size {vocab_size}")
    return ids


def batches(ids: Sequence[Sequence[int]], batch_size: int, max_len: int, pad_id: int = 0) -> Iterator[Batch]:
    """Length-sorted batches of `ids`, right-padded; documents with no tokens are left out."""
    if batch_size < 1 or max_len < 1:
        raise SynthflawError(f"batch size and max length must be >= 1, got {batch_size} and {max_len}")
    lengths = np.array([min(len(x), max_len) for x in ids])
    order = [i for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0]
    for start in range(0, len(order), batch_size):
        rows = np.array(order[start:start + batch_size])
        width = bucket_length(int(lengths[rows].max()), max_len)
        input_ids = np.full((batch_size, width), pad_id, dtype=np.int32)
        mask = np.zeros((batch_size, width), dtype=np.int32)
        for r, i in enumerate(rows):
            n = lengths[i]
            input_ids[r, :n] = ids[i][:n]
            mask[r, :n] = 1
        yield Batch(rows, input_ids, mask)


def num_batches(n_docs: int, batch_size: int) -> int:
    """How many batches `batches` yields for n_docs non-empty documents."""
    return -(-n_docs // batch_size)
