"""MaxText's published pre-training MFU, and the fit of the plan's two calibration constants.

The roofline in `estimate.roofline` is an upper bound: it counts matmul FLOPs at the chip's
peak and nothing else. Measured runs fall short of it by an amount that grows with the chip's
FLOP/byte ratio (v6e, 918 TFLOP/s on 1.6 TB/s of HBM, loses most), which is what the
non-matmul work (norms, activations, softmax, residual adds: HBM-bound) would do. So the
calibrated step time is

    a x (hardware matmul FLOPs / peak)  +  c x layers x hidden x tokens / HBM bandwidth

per chip: `a` >= 1 is how far the matmuls themselves stay from peak, `c` the HBM bytes per
token, layer and hidden unit that the non-matmul work moves. Both are fitted by least squares
on `PUBLISHED` points marked "fit"; the points marked "held out" (one per TPU generation,
and all of v4) only check the result. `fit()` reproduces the constants in `estimate.py`
(a test asserts it).

All points are MaxText's tuned, compute-bound runs (their collectives overlap the compute),
so the fit says nothing about ICI-bound steps: the plan keeps the ICI and HBM roofline terms
as they are and takes the largest.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from synthflaw_jax import model_zoo, tpu_specs
from synthflaw_jax.models.config import ModelConfig
from synthflaw_jax.planning import estimate

_RUN_LLAMA2 = "MaxText docs/advanced_docs/Run_Llama2.md (MFU table, v4-128 / v5p-128 / v5e-256)"
_TIERING = "MaxText docs/reference/models/tiering.md (Optimized models tiering, MFU column)"
_V5E = "MaxText MaxText/configs/v5e/README.md (1x v5e-256 row; configs/v5e/<N>b.sh: SL 2048, full remat)"
_V5P = "MaxText MaxText/configs/v5p/README.md (1x v5p-128 rows; configs/v5p/<N>b.sh: SL 2048)"


@dataclasses.dataclass(frozen=True)
class Published:
    """One published MaxText pre-training result."""

    chip: str      # TPU generation (a key of tpu_specs.CHIPS)
    slice: str     # as published
    model: str     # a key of `models()`
    seq_len: int
    mfu: float     # measured model-FLOPs utilisation, as a fraction
    role: str      # "fit" or "held out"
    source: str
    note: str = ""


PUBLISHED: tuple[Published, ...] = (
    Published("v5p", "v5p-128", "maxtext_32b", 2048, 0.7147, "fit", _V5P),
    Published("v5p", "v5p-128", "maxtext_64b", 2048, 0.7031, "fit", _V5P),
    Published("v5p", "512 chips", "llama2_70b", 4096, 0.654, "held out", _TIERING),
    Published("v5e", "v5e-256", "maxtext_16b", 2048, 0.6110, "held out", _V5E),
    Published("v5e", "v5e-256", "maxtext_32b", 2048, 0.6686, "fit", _V5E),
    Published("v5e", "v5e-256", "maxtext_64b", 2048, 0.5990, "fit", _V5E),
    Published("v5e", "v5e-256", "llama2_70b", 2048, 0.57, "fit", _RUN_LLAMA2,
              "sequence length not stated: MaxText's default (2048) assumed"),
    Published("v6e", "256 chips", "llama3_8b", 8192, 0.4546, "fit", _TIERING, "Llama 3.1 8B"),
    Published("v6e", "256 chips", "llama3_70b", 8192, 0.5033, "fit", _TIERING, "Llama 3.1 70B"),
    Published("v6e", "256 chips", "llama2_70b", 4096, 0.438, "held out", _TIERING),
    Published("v4", "v4-128", "llama2_70b", 2048, 0.57, "held out", _RUN_LLAMA2,
              "sequence length not stated: MaxText's default (2048) assumed"),
)


def _maxtext_scaled(scale: int) -> ModelConfig:
    """MaxText's `global_parameter_scale` models: its base model (embed 2048, 16 heads of 128,
    MLP 7168 with SwiGLU, 16 layers, vocab 32000, untied) with heads and MLP, embed, and layers
    doubled in turn, one per power of two of the scale."""
    cycles, rest = divmod(int(math.log2(scale)), 3)
    wide = cycles + int(rest > 0)  # heads and MLP width
    embed = cycles + int(rest > 1)
    heads = 16 * 2**wide
    return ModelConfig(model_type="llama", vocab_size=32000, hidden_size=2048 * 2**embed,
                       intermediate_size=7168 * 2**wide, num_hidden_layers=16 * 2**cycles,
                       num_attention_heads=heads, num_key_value_heads=heads, head_dim=128,
                       tie_word_embeddings=False, remat_policy="full")


def model(name: str) -> ModelConfig:
    """The model of a published point, with full remat (what the plan's configs use)."""
    if name.startswith("maxtext_"):
        return _maxtext_scaled(int(name.removeprefix("maxtext_").removesuffix("b")))
    return model_zoo.model_config(name, remat_policy="full")


def features(point: Published) -> tuple[float, float]:
    """(useful / hardware FLOPs, x) of one row of the point: the calibrated MFU is
    (useful / hardware) / (a + c x), x = layers x hidden x seq_len x peak / (hardware FLOPs x HBM bandwidth)."""
    cfg, chip = model(point.model), tpu_specs.CHIPS[point.chip]
    shape = estimate.StepShape(policy_rows=1, reference_rows=0, seq_len=point.seq_len, grad_accum=1)
    useful = estimate.model_flops(cfg, shape)
    hardware = useful + estimate.remat_flops(cfg, shape)
    x = estimate.activation_units(cfg, shape) * chip.peak_bf16_flops / (hardware * chip.hbm_bandwidth)
    return useful / hardware, x


def fit(points=PUBLISHED) -> tuple[float, float]:
    """(a, c) by least squares of (useful / hardware) / measured MFU = a + c x over the "fit" points."""
    rows = [features(p) + (p.mfu,) for p in points if p.role == "fit"]
    design = np.array([[1.0, x] for _, x, _ in rows])
    target = np.array([ratio / mfu for ratio, _, mfu in rows])
    a, c = np.linalg.lstsq(design, target, rcond=None)[0]
    return float(a), float(c)


def estimates(point: Published) -> dict:
    """The plan's MFU for a published point: before calibration (the roofline's upper end for a
    compute-bound step) and after, from the constants in `estimate.py`."""
    cfg, chip = model(point.model), tpu_specs.CHIPS[point.chip]
    topo = tpu_specs.Topology(point.chip, chip, 1, 1, point.chip)
    shape = estimate.StepShape(policy_rows=1, reference_rows=0, seq_len=point.seq_len, grad_accum=1)
    useful = estimate.model_flops(cfg, shape)
    hardware = useful + estimate.remat_flops(cfg, shape)
    r = estimate.roofline(topo, hardware, 0.0, 0.0, useful, shape.policy_tokens,
                          activation_bytes_per_chip=estimate.activation_bytes(cfg, shape, 1))
    return {"before": r["mfu_overlap"], "after": r["mfu_calibrated"]}
