"""Generate-then-score mode: responses from a model for IFEval prompts (not connected yet)."""
from __future__ import annotations

from typing import Any, Sequence

from synthflaw_jax.errors import SynthflawError


def generate_responses(model_path: str, prompts: Sequence[str], **gen_kwargs: Any) -> list[str]:
    """One response per prompt from the model at `model_path`.

    Not available yet: the project's KV-cache generation will be connected here.
    """
    raise SynthflawError("generation is not available yet")
