"""Examples -> fixed [rows, seq_len] batches: packed (several examples a row) or padded (one).

Batch arrays (all int32): `input_ids`, `loss_mask`, `segment_ids` (1, 2, ... per example in
its row, 0 = padding) and `positions` (0, 1, ... restarting at each example). In `fill_batch`
an example is never split across rows; one longer than seq_len is handled first by the
truncation policy:
  truncate  keep its first seq_len tokens (dropped instead if no target token is left)
  drop      leave it out
  error     raise SynthflawError naming where it came from
`fill_rows` instead fills every row to the brim: examples follow one another and the one that
does not fit is split, its rest opening the next row (plain text, where no example has to
stay whole; no truncation needed).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from synthflaw_jax.data.formats import Example
from synthflaw_jax.errors import SynthflawError

TRUNCATION_POLICIES = ("truncate", "drop", "error")
BATCH_KEYS = ("input_ids", "loss_mask", "segment_ids", "positions")


def apply_truncation(example: Example, seq_len: int, policy: str) -> tuple[Example | None, str]:
    """(example or None, outcome) with outcome one of "ok", "truncated", "dropped_too_long", "dropped_no_target"."""
    if len(example) <= seq_len:
        return example, "ok"
    if policy == "drop":
        return None, "dropped_too_long"
    if policy == "error":
        where = f"{example.origin}: " if example.origin else ""
        raise SynthflawError(
            f"{where}example has {len(example)} tokens, more than seq_len {seq_len} (truncation='error')"
        )
    if policy != "truncate":
        raise SynthflawError(f"config: truncation {policy!r} is not one of {', '.join(TRUNCATION_POLICIES)}")
    cut = Example(example.ids[:seq_len], example.mask[:seq_len], example.origin)
    if not cut.mask.any() and example.mask.any():
        return None, "dropped_no_target"  # only prompt left: nothing to learn or forget
    return cut, "truncated"


def empty_batch(rows: int, seq_len: int, pad_id: int = 0) -> dict[str, np.ndarray]:
    """An all-padding batch."""
    batch = {k: np.zeros((rows, seq_len), np.int32) for k in BATCH_KEYS}
    batch["input_ids"][:] = pad_id
    return batch


def fill_batch(get: Callable[[int], Example | None], start: int, stop: int, rows: int, seq_len: int,
               *, packing: bool, pad_id: int = 0,
               max_segments: int | None = None) -> tuple[dict[str, np.ndarray], int, int]:
    """Fill one batch from examples `get(start)`, `get(start+1)`, ... (index < stop).

    `get(i)` returns an Example of at most seq_len tokens, or None for one left out. Each
    example goes to the first row with room (first fit; with `packing=False`, the first
    empty row); the batch closes at the first example that fits nowhere, which then opens
    the next batch, so the next batch depends only on the returned index. `max_segments`
    caps the examples per row (a full row has no room), so per-example losses that keep
    `max_segments` columns see every example.
    Returns (batch, next index, examples placed).
    """
    batch = empty_batch(rows, seq_len, pad_id)
    used = np.zeros(rows, np.int64)
    n_segments = np.zeros(rows, np.int64)
    index, placed = start, 0
    while index < stop:
        example = get(index)
        if example is None:
            index += 1
            continue
        n = len(example)
        if n > seq_len:
            raise ValueError(f"example of {n} tokens reached the packer (seq_len {seq_len})")
        free = np.flatnonzero(used + n <= seq_len) if packing else np.flatnonzero(used == 0)
        if max_segments is not None:
            free = free[n_segments[free] < max_segments]
        if n == 0 or len(free) == 0:
            if n == 0:  # nothing to place; consume it
                index += 1
                continue
            break
        r = int(free[0])
        lo, hi = int(used[r]), int(used[r]) + n
        n_segments[r] += 1
        batch["input_ids"][r, lo:hi] = example.ids
        batch["loss_mask"][r, lo:hi] = example.mask
        batch["loss_mask"][r, lo] = 0  # nothing in the row may predict an example's first token
        batch["segment_ids"][r, lo:hi] = n_segments[r]
        batch["positions"][r, lo:hi] = np.arange(n, dtype=np.int32)
        used[r] = hi
        placed += 1
        index += 1
    return batch, index, placed


def fill_rows(get: Callable[[int], Example | None], start: int, offset: int, stop: int, rows: int,
              seq_len: int, *, pad_id: int = 0) -> tuple[dict[str, np.ndarray], int, int, int]:
    """Fill one batch row by row from example `start`'s token `offset` on, splitting examples.

    Each piece of an example is a segment of its own with positions from 0 (rotary attention
    only sees positions relative to the segment, and a piece never attends to its other
    parts), and its first token carries no loss: nothing in the row predicts it. Only the
    last batch of a finite stream has padding. Returns (batch, next index, next offset,
    examples finished).
    """
    batch = empty_batch(rows, seq_len, pad_id)
    index, finished = start, 0
    row, used, segment = 0, 0, 0
    while index < stop and row < rows:
        example = get(index)
        if example is None or offset >= len(example):  # left out, or empty
            index, offset = index + 1, 0
            continue
        take = min(seq_len - used, len(example) - offset)
        lo, hi = used, used + take
        segment += 1
        batch["input_ids"][row, lo:hi] = example.ids[offset:offset + take]
        batch["loss_mask"][row, lo:hi] = example.mask[offset:offset + take]
        batch["loss_mask"][row, lo] = 0
        batch["segment_ids"][row, lo:hi] = segment
        batch["positions"][row, lo:hi] = np.arange(take, dtype=np.int32)
        offset += take
        if offset == len(example):
            index, offset, finished = index + 1, 0, finished + 1
        used = hi
        if used == seq_len:
            row, used, segment = row + 1, 0, 0
    return batch, index, offset, finished


def pack_examples(examples: list[Example], rows: int, seq_len: int, *, packing: bool = True,
                  pad_id: int = 0) -> list[dict[str, np.ndarray]]:
    """All of `examples` (each at most seq_len long) as a list of batches; a convenience for tests and tools."""
    batches, index = [], 0
    while index < len(examples):
        batch, index, _ = fill_batch(examples.__getitem__, index, len(examples), rows, seq_len,
                                     packing=packing, pad_id=pad_id)
        batches.append(batch)
    return batches
