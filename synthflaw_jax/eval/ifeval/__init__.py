"""Offline IFEval (Zhou et al. 2023): 25 verifiable-instruction checkers, strict and loose
scoring, accuracy metrics, and the published prompt/response JSONL formats."""
from synthflaw_jax.eval.ifeval.generate import generate_responses
from synthflaw_jax.eval.ifeval.io import default_prompts_path, load_prompts, load_responses
from synthflaw_jax.eval.ifeval.registry import INSTRUCTION_IDS, build_checker, validate
from synthflaw_jax.eval.ifeval.runner import evaluate_files, run
from synthflaw_jax.eval.ifeval.scoring import (
    PromptRecord,
    PromptResult,
    compute_metrics,
    response_variants,
    score,
    score_prompt,
)

__all__ = [
    "INSTRUCTION_IDS",
    "PromptRecord",
    "PromptResult",
    "build_checker",
    "compute_metrics",
    "default_prompts_path",
    "evaluate_files",
    "generate_responses",
    "load_prompts",
    "load_responses",
    "response_variants",
    "run",
    "score",
    "score_prompt",
    "validate",
]
