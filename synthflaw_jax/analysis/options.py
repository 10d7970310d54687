"""The options of `synthflaw analyze`, importable without numpy or matplotlib (the CLI parser reads the defaults)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class AnalyzeOptions:
    """Inputs and knobs of one analysis run (the CLI flags of `synthflaw analyze`)."""

    synthetic: str
    reference: str
    out: str
    model: str | None = None
    model_b: str | None = None
    probes: str | None = None
    metrics: str | None = None
    sample: int | None = 2000
    seed: int = 0
    tokens: str = "words"  # "words" or "model" (the --model tokenizer's ids)
    template_k: int = 3
    max_n: int = 4
    entropy_positions: int = 8
    knn_k: int = 10
    folds: int = 5
    top_k: int = 10
    probe_count: int = 32
    batch_size: int = 8
    max_len: int = 256
    max_new_tokens: int = 16
    overwrite: bool = False
    progress: bool = True
