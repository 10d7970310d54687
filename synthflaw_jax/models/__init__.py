"""The Flax Llama-family decoder, its config, and loading from HF or our checkpoints."""
from synthflaw_jax.models.config import ModelConfig  # noqa: F401
