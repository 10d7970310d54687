"""Which device the benchmarks run on, for both sides alike.

JAX picks its backend (CPU unless `JAX_PLATFORMS` names another); the PyTorch baseline then
runs on the same kind of device: CUDA when JAX runs on a GPU, else the CPU. On a GPU both
sides do float32 matrix products in TF32, JAX's default there, so neither side gets a
cheaper arithmetic than the other; with `JAX_DEFAULT_MATMUL_PRECISION=highest` both do them
in full float32 (the setting under which greedy tokens can be compared exactly).
"""
from __future__ import annotations

import os

from synthflaw_jax.demo.progress import cpu_name  # noqa: F401  (re-exported for the benchmarks)


def jax_on_gpu() -> bool:
    """Whether JAX's default backend is a GPU."""
    import jax

    return jax.default_backend() == "gpu"


def torch_device() -> str:
    """'cuda' when JAX runs on a GPU (TF32 matmuls matching JAX's precision setting), else 'cpu'."""
    if not jax_on_gpu():
        return "cpu"
    import jax
    import torch

    tf32 = jax.config.jax_default_matmul_precision not in ("highest", "float32")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return "cuda"


def describe() -> str:
    """One line naming what ran the benchmark: the GPU's name, or the CPU's and its core count."""
    import jax

    if jax_on_gpu():
        return f"GPU {jax.devices()[0].device_kind} (host CPU {cpu_name()}, {os.cpu_count()} cores)"
    return f"CPU {cpu_name()}, {os.cpu_count()} cores"
