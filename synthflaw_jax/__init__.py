"""synthflaw_jax: find and unlearn the flaws synthetic Q-A data leaves in an LLM (JAX/Flax)."""

__version__ = "0.1.0"


def load(path, mesh=None, dtype=None, **runtime):
    """Load an HF directory or a synthflaw checkpoint; returns an object with `.config`,
    `.params` and `.logits(input_ids) -> float32 [batch, seq, vocab]`."""
    from synthflaw_jax.models.loading import load as _load

    return _load(path, mesh=mesh, dtype=dtype, **runtime)
