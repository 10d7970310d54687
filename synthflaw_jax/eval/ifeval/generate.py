"""Generate-then-score mode: responses from a model for IFEval prompts."""
from __future__ import annotations

from typing import Any, Sequence


def generate_responses(model_path: str, prompts: Sequence[str], **gen_kwargs: Any) -> list[str]:
    """One response per prompt from the model at `model_path` (an HF directory or our
    checkpoint), through the KV-cache decoder with the chat template when the tokenizer has
    one. `gen_kwargs`: `max_new_tokens`, `mesh` and `dtype` (how the model is loaded), plus the
    sampling options of `LoadedModel.generate` (`temperature`, `top_k`, `top_p`, `seed`,
    `batch_size`, `chat_template`)."""
    from synthflaw_jax.models.loading import load

    gen_kwargs = dict(gen_kwargs)
    if gen_kwargs.get("progress") is True:
        gen_kwargs["progress"] = "IFEval generating"
    max_new_tokens = int(gen_kwargs.pop("max_new_tokens", 1280))
    model = load(model_path, mesh=gen_kwargs.pop("mesh", None), dtype=gen_kwargs.pop("dtype", None))
    return model.generate(list(prompts), max_new_tokens, **gen_kwargs)
