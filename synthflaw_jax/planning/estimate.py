"""Analytic memory, FLOPs, HBM traffic and a roofline step time for one unlearning step.

Everything here is arithmetic on the model shape, the batch and the chip's published figures
(`synthflaw_jax.tpu_specs`); nothing is measured. Conventions follow MaxText's FLOP count:
a matmul of an [m, k] by a [k, n] is 2mkn FLOPs, training costs 3x the forward, causal
attention counts half of the T x T scores, and the input embedding lookup is not a matmul.
"""
from __future__ import annotations

import dataclasses

from synthflaw_jax.models.config import ModelConfig
from synthflaw_jax.tpu_specs import Topology


@dataclasses.dataclass(frozen=True)
class StepShape:
    """Rows per step (global) of each stream the step sees, the sequence length, microbatches."""

    policy_rows: int       # forget + replay (+ retain) rows: forward and backward
    reference_rows: int    # rows that also get a frozen-reference forward (NPO / KL / bias term)
    seq_len: int
    grad_accum: int

    @property
    def policy_tokens(self) -> int:
        """Tokens (padding included) that go through forward + backward per step."""
        return self.policy_rows * self.seq_len


def dtype_bytes(name: str) -> int:
    """Bytes of one element of a dtype name ("float32", "bfloat16", "float16")."""
    return {"float32": 4, "bfloat16": 2, "float16": 2}[str(name)]


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in matmuls: all but the input embedding table (the LM head
    counts; with tied embeddings the table is the LM head) and the norm scales."""
    norms = (2 * cfg.num_hidden_layers + 1) * cfg.hidden_size
    embed = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
    return cfg.num_params() - embed - norms


def _context(cfg: ModelConfig, seq_len: int) -> float:
    """Mean number of keys a query attends to under causal (and sliding-window) masking."""
    w = cfg.sliding_window
    if w and w < seq_len:
        return w * (1 - w / (2 * seq_len))
    return seq_len / 2


def forward_flops_per_token(cfg: ModelConfig, seq_len: int, layers_only: bool = False) -> float:
    """Forward FLOPs per token: 2 x matmul params + causal attention scores and values."""
    head = cfg.vocab_size * cfg.hidden_size
    params = matmul_params(cfg) - (head if layers_only else 0)
    attention = 4 * _context(cfg, seq_len) * cfg.num_attention_heads * cfg.head_dim * cfg.num_hidden_layers
    return 2 * params + attention


def model_flops(cfg: ModelConfig, shape: StepShape) -> float:
    """Useful FLOPs of one step (global): 3x forward on policy tokens + 1x on reference tokens."""
    fwd = forward_flops_per_token(cfg, shape.seq_len)
    return 3 * fwd * shape.policy_tokens + fwd * shape.reference_rows * shape.seq_len


def remat_flops(cfg: ModelConfig, shape: StepShape) -> float:
    """Extra FLOPs (global) that rematerialisation spends recomputing the layers' forward."""
    if cfg.remat_policy == "full":
        return forward_flops_per_token(cfg, shape.seq_len, layers_only=True) * shape.policy_tokens
    if cfg.remat_policy == "dots_no_batch":  # attention einsums carry batch dims: recomputed
        attn = 4 * _context(cfg, shape.seq_len) * cfg.num_attention_heads * cfg.head_dim * cfg.num_hidden_layers
        return attn * shape.policy_tokens
    return 0.0


def state_bytes(cfg: ModelConfig, devices: int, needs_reference: bool) -> dict:
    """Per-device bytes of params, AdamW moments and reference params for an even split."""
    per = cfg.num_params() * dtype_bytes(cfg.param_dtype) / devices
    return {
        "params": per,
        "optimizer": 2 * per,  # AdamW mu and nu, kept in the param dtype
        "reference_params": per if needs_reference else 0.0,
        "gradients": per,      # a temporary inside the step
    }


def hbm_traffic_bytes(cfg: ModelConfig, shape: StepShape, devices: int, needs_reference: bool) -> float:
    """Per-chip HBM bytes for weights and optimizer state only (activations not counted):
    every pass over the (gathered) layers reads the full weights in the compute dtype; the
    update reads params, grads, mu, nu and writes params, mu, nu."""
    n = cfg.num_params()
    passes = 3 + (cfg.remat_policy == "full") + (1 if needs_reference else 0)  # fwd, 2x bwd, remat, ref
    weights = passes * shape.grad_accum * n * dtype_bytes(cfg.dtype)
    update = 7 * n * dtype_bytes(cfg.param_dtype) / devices
    return weights + update


# Calibration against MaxText's published MFU (`planning/calibration.py`, docs/plan.md): 2
# constants fitted by least squares on 7 published runs (v5e, v5p, v6e), checked on 4 held out.
MATMUL_TIME_FACTOR = 1.023  # a: matmul time = a x hardware FLOPs / peak
ACTIVATION_BYTES = 647.0    # c: HBM bytes of non-matmul work per token, layer and hidden unit


def activation_units(cfg: ModelConfig, shape: StepShape) -> float:
    """layers x hidden x tokens of one step (global), a reference-only token counting 1/4: it
    gets one forward where a policy token gets forward, recomputed forward and backward."""
    tokens = shape.policy_tokens + shape.reference_rows * shape.seq_len / 4
    return cfg.num_hidden_layers * cfg.hidden_size * tokens


def activation_bytes(cfg: ModelConfig, shape: StepShape, devices: int) -> float:
    """Per-chip HBM bytes the calibration charges for non-matmul work (see `roofline`)."""
    return ACTIVATION_BYTES * activation_units(cfg, shape) / devices


def roofline(topology: Topology, flops_per_chip: float, hbm_bytes_per_chip: float,
             collective_bytes_per_chip: float, useful_flops_global: float, policy_tokens: int,
             activation_bytes_per_chip: float = 0.0) -> dict:
    """Step time as max (perfect overlap, a lower bound) and as sum (no overlap) of compute,
    HBM and ICI time, with the MFU and tokens/s/chip each implies; and "calibrated": the
    compute time scaled and charged for non-matmul HBM traffic as fitted to MaxText's
    published runs (`MATMUL_TIME_FACTOR`, `activation_bytes_per_chip`), overlapping the rest."""
    chip = topology.chip
    t_compute = flops_per_chip / chip.peak_bf16_flops
    t_hbm = hbm_bytes_per_chip / chip.hbm_bandwidth
    # a collective that spans the slice can use every ICI link of the chip: half the
    # bidirectional figure each way (best case)
    t_ici = collective_bytes_per_chip / (chip.ici_bandwidth / 2)
    t_calibrated = MATMUL_TIME_FACTOR * t_compute + activation_bytes_per_chip / chip.hbm_bandwidth
    out = {"compute_s": t_compute, "hbm_s": t_hbm, "ici_s": t_ici, "compute_calibrated_s": t_calibrated}
    for label, t in (("overlap", max(t_compute, t_hbm, t_ici)), ("serial", t_compute + t_hbm + t_ici),
                     ("calibrated", max(t_calibrated, t_hbm, t_ici))):
        out[f"step_s_{label}"] = t
        out[f"mfu_{label}"] = useful_flops_global / (topology.chips * chip.peak_bf16_flops * t) if t else 0.0
        out[f"tokens_per_s_per_chip_{label}"] = policy_tokens / (t * topology.chips) if t else 0.0
    out["bound"] = max(("compute", t_compute), ("hbm", t_hbm), ("ici", t_ici), key=lambda kv: kv[1])[0]
    return out
