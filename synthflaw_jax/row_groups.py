"""Several groups of rows (the forget and the replay batch) through one model call.

Under FSDP every layer's weights are all-gathered for each forward (and again for its
backward), so two forwards per step, one per group, gather every weight twice. Joining the
groups along the batch axis gathers once. The join is done shard by shard: with the batch
split over D devices, each group is viewed as [D, rows/D, ...] and the groups are joined on
the second axis, so every device joins only its own rows and nothing moves between devices
(a plain concatenation would put the replay rows on other devices than they came from).
Sequences of different lengths are padded on the right with segment 0, which no real token
attends to, and the padding's logits are cut off again.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import jax.numpy as jnp
from jax.sharding import Mesh

from synthflaw_jax import sharding as shd


def batch_shards(mesh: Mesh | None, sizes: Sequence[int]) -> int:
    """How many devices split the batch axis of every group (1 when any group's rows do not
    divide, since then that group's batch axis is not sharded)."""
    if mesh is None:
        return 1
    specs = {shd.logical_to_spec(("batch",), (n,), mesh) for n in sizes}
    if len(specs) != 1:
        return 1
    (axes,) = tuple(specs.pop()) or (None,)
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else axes
    return math.prod(mesh.shape[a] for a in axes)


def _pad_length(x: jnp.ndarray, length: int) -> jnp.ndarray:
    pad = length - x.shape[1]
    return x if pad == 0 else jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))


MODEL_INPUTS = ("input_ids", "positions", "segment_ids")


def join(groups: Sequence[dict], shards: int) -> dict:
    """The model inputs of several batches ([rows, length] arrays) as one, rows joined shard
    by shard over `shards` devices."""
    length = max(g["input_ids"].shape[1] for g in groups)
    out = {}
    for key in MODEL_INPUTS:
        parts = [_pad_length(g[key], length) for g in groups]
        out[key] = jnp.concatenate(
            [p.reshape((shards, p.shape[0] // shards) + p.shape[1:]) for p in parts], axis=1
        ).reshape((-1,) + parts[0].shape[1:])
    return out


def split(joined: jnp.ndarray, groups: Sequence[dict], shards: int) -> list[jnp.ndarray]:
    """The per-group parts of a [rows, length, ...] output of `join`'s batch, in group order,
    each cut back to its group's own length."""
    per_shard = joined.reshape((shards, joined.shape[0] // shards) + joined.shape[1:])
    out, start = [], 0
    for g in groups:
        rows, length = g["input_ids"].shape[:2]
        part = per_shard[:, start:start + rows // shards, :length]
        out.append(part.reshape((rows,) + part.shape[2:]))
        start += rows // shards
    return out


def forward_together(forward: Callable, params, groups: Sequence[dict | None], mesh: Mesh | None) -> list:
    """`[forward(params, g) for g in groups]` with one call of `forward` (None groups give None)."""
    present = [g for g in groups if g is not None]
    if len(present) <= 1:
        return [forward(params, g) if g is not None else None for g in groups]
    shards = batch_shards(mesh, [g["input_ids"].shape[0] for g in present])
    outputs = iter(split(forward(params, join(present, shards)), present, shards))
    return [next(outputs) if g is not None else None for g in groups]
