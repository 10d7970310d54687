"""Named model shapes: the tiny CPU default and real Llama-family sizes (for planning)."""
from __future__ import annotations

from synthflaw_jax.models.config import ModelConfig


def tiny(vocab_size: int = 2048, **overrides) -> ModelConfig:
    """The embedded tiny default (~1M params): runs on a laptop CPU in seconds.

    Token ids follow the shipped tiny tokenizer (pad 0, bos 1, eos 2)."""
    fields = dict(
        model_type="llama", vocab_size=vocab_size, hidden_size=128, intermediate_size=344,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    fields.update(overrides)
    return ModelConfig(**fields)
