"""Host-local numpy batches -> global `jax.Array`s laid out on the data axes of the mesh.

Each host passes the rows it read (its share, see pipeline.py); the global batch has
`rows * process_count` rows, split over the devices of the sharding's batch axes.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from synthflaw_jax.errors import SynthflawError


def batch_sharding(mesh: Mesh, axes: Sequence[str] = ("data",)) -> NamedSharding:
    """Rows split over the mesh axes `axes` (those present in the mesh), columns replicated."""
    present = tuple(a for a in axes if a in mesh.axis_names)
    return NamedSharding(mesh, PartitionSpec(present if present else None, None))


def to_global(batch: Any, sharding: NamedSharding) -> Any:
    """Every array of `batch` (a batch or a {stream: batch} mixture) as a global jax.Array.

    Uses `jax.make_array_from_process_local_data`, so on a pod every host passes only its
    own rows; the rows of each array must divide evenly over the sharding's row shards.
    """

    def one(path, x):
        x = np.asarray(x)
        try:
            return jax.make_array_from_process_local_data(sharding, x)
        except ValueError as err:
            where = jax.tree_util.keystr(path)
            raise SynthflawError(
                f"batch{where}: {x.shape[0]} local rows cannot be laid out on {sharding.spec} "
                f"of mesh {dict(sharding.mesh.shape)}: {str(err).splitlines()[0]}"
            ) from None

    return jax.tree_util.tree_map_with_path(one, batch)
