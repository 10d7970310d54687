"""One mesh `("data", "fsdp", "tensor")`, one table of logical-axis rules, shardings from both.

Parameters and activations carry logical axis names (`embed`, `heads`, `vocab`, ...);
`LOGICAL_RULES` is the single place that maps them to mesh axes. A mesh axis that does not
divide a dimension (a 2-head toy model on a 4-way tensor axis) is dropped for that
dimension, so the same rules serve tiny and real models.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from synthflaw_jax.errors import SynthflawError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis name -> mesh axis (or tuple of mesh axes, or None for replicated)
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("embed", "fsdp"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
    ("layers", None),
    ("cache_batch", ("data", "fsdp")),
    ("cache_length", None),
)


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, devices: Sequence | None = None) -> Mesh:
    """A mesh over `devices` (default: all); one size may be -1 for "the rest of the devices"."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise SynthflawError("mesh: at most one of data/fsdp/tensor may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if any(s == 0 or s < -1 for s in sizes):
        raise SynthflawError(f"mesh: sizes must be positive or -1, got {sizes}")
    if -1 in sizes:
        if len(devices) % known:
            raise SynthflawError(f"mesh: {len(devices)} devices do not divide by {known}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise SynthflawError(
            f"mesh: data*fsdp*tensor = {math.prod(sizes)} but there are {len(devices)} devices"
        )
    grid = np.array(devices).reshape(sizes)
    return Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def _rules_dict(rules) -> dict[str, Any]:
    return dict(rules if rules is not None else LOGICAL_RULES)


def logical_to_spec(logical_axes: Sequence[str | None], shape: Sequence[int] | None, mesh: Mesh,
                    rules=None) -> PartitionSpec:
    """PartitionSpec for an array with these logical axes; drops mesh axes that don't divide."""
    table = _rules_dict(rules)
    used: set[str] = set()
    spec = []
    for i, name in enumerate(logical_axes):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        kept = []
        size = shape[i] if shape is not None else None
        for axis in axes:
            if axis in used or mesh.shape[axis] == 1:
                continue
            factor = math.prod(mesh.shape[a] for a in kept) * mesh.shape[axis]
            if size is not None and size % factor:
                continue
            kept.append(axis)
        used.update(kept)
        spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*spec)


def logical_to_sharding(logical_axes, shape, mesh: Mesh, rules=None) -> NamedSharding:
    """NamedSharding for one array from its logical axis names and shape."""
    return NamedSharding(mesh, logical_to_spec(logical_axes, shape, mesh, rules))


def tree_shardings(logical_tree, abstract_tree, mesh: Mesh, rules=None):
    """NamedShardings for a pytree, given matching trees of logical axis tuples and shapes."""
    return jax.tree.map(
        lambda axes, x: logical_to_sharding(axes, x.shape, mesh, rules),
        logical_tree,
        abstract_tree,
        is_leaf=lambda x: isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x),
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """A sharding that keeps a full copy on every device (scalars, RNG keys, step counters)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Sharding of a [batch, ...] array: batch over ("data", "fsdp"), the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (ndim - 1))))
