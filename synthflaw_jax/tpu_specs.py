"""Cloud TPU chips and slice names: peak FLOP/s, HBM, ICI, and how a name like `v5p-128` maps
to chips and hosts.

Figures are Google's published per-chip specifications (Cloud TPU system architecture pages):

- v4:  https://cloud.google.com/tpu/docs/v4  (275 TFLOP/s bf16, 32 GiB HBM2 at 1200 GB/s). The
  v4 page lists no per-chip ICI figure; 6 links x 45 GB/s one way (the JAX "Scaling Book",
  https://jax-ml.github.io/scaling-book/tpus/) gives ~540 GB/s bidirectional.
- v5e: https://cloud.google.com/tpu/docs/v5e  (197 TFLOP/s bf16, 16 GB HBM2 at 819 GB/s,
  400 GB/s bidirectional ICI per chip).
- v5p: https://cloud.google.com/tpu/docs/v5p  (459 TFLOP/s bf16, 95 GB HBM2e at 2765 GB/s,
  1200 GB/s bidirectional ICI per chip).
- v6e: https://cloud.google.com/tpu/docs/v6e  (918 TFLOP/s bf16, 32 GB HBM at 1638 GB/s,
  800 GB/s bidirectional ICI per chip).

Slice names follow gcloud's accelerator types: v4 and v5p count TensorCores (2 per chip, so
`v5p-128` is 64 chips), v5e (`v5litepod-N`, also written `v5e-N`) and v6e count chips. Hosts
hold 4 chips, except single-host v5e/v6e slices of up to 8 chips.
"""
from __future__ import annotations

import dataclasses
import re

from synthflaw_jax.errors import SynthflawError

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU generation's per-chip figures."""

    name: str
    peak_bf16_flops: float      # FLOP/s, dense bf16 matmul peak
    hbm_bytes: int              # HBM capacity per chip
    hbm_bandwidth: float        # bytes/s
    ici_bandwidth: float        # bytes/s per chip, all links, both directions
    cores_per_chip: int         # TensorCores per chip (names of v4/v5p count cores)
    gcloud_prefix: str          # accelerator-type prefix gcloud expects
    runtime_version: str        # default TPU VM software image
    allowed_sizes: tuple[int, ...]  # valid numbers in the slice name
    source: str


CHIPS: dict[str, Chip] = {
    "v4": Chip("v4", 275e12, 32 * GIB, 1200e9, 540e9, 2, "v4", "tpu-ubuntu2204-base",
               tuple(2**k for k in range(3, 14)), "https://cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("v5e", 197e12, 16 * GIB, 819e9, 400e9, 1, "v5litepod", "v2-alpha-tpuv5-lite",
                (1, 4, 8, 16, 32, 64, 128, 256), "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("v5p", 459e12, 95 * GIB, 2765e9, 1200e9, 2, "v5p", "v2-alpha-tpuv5",
                tuple(2**k for k in range(3, 15)), "https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("v6e", 918e12, 32 * GIB, 1638e9, 800e9, 1, "v6e", "v2-alpha-tpuv6e",
                (1, 4, 8, 16, 32, 64, 128, 256), "https://cloud.google.com/tpu/docs/v6e"),
}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v4p": "v4"}


@dataclasses.dataclass(frozen=True)
class Topology:
    """A TPU slice: its chip, how many chips and hosts, and the gcloud accelerator type."""

    name: str
    chip: Chip
    chips: int
    hosts: int
    accelerator_type: str

    @property
    def chips_per_host(self) -> int:
        """Chips attached to each host VM."""
        return self.chips // self.hosts


def topology_names() -> str:
    """A short human list of accepted names, for error messages and --help."""
    return "v4-8..v4-8192, v5e-1..v5e-256 (or v5litepod-N), v5p-8..v5p-16384, v6e-1..v6e-256"


def parse_topology(name: str) -> Topology:
    """`v5p-128`, `v5e-16`, `v5litepod-16`, `v6e-8`, `v4-32` -> Topology; SynthflawError otherwise."""
    match = re.fullmatch(r"\s*(v\d+[a-z]*)-(\d+)\s*", str(name).lower())
    if not match:
        raise SynthflawError(f"topology {name!r}: expected <generation>-<size>, e.g. v5p-128 ({topology_names()})")
    gen, size = _ALIASES.get(match.group(1), match.group(1)), int(match.group(2))
    if gen not in CHIPS:
        raise SynthflawError(f"topology {name!r}: unknown TPU generation {match.group(1)!r} (known: {', '.join(CHIPS)})")
    chip = CHIPS[gen]
    if size not in chip.allowed_sizes:
        sizes = ", ".join(str(s) for s in chip.allowed_sizes)
        raise SynthflawError(f"topology {name!r}: {gen} slices come in sizes {sizes}")
    chips = size // chip.cores_per_chip
    single_host = gen in ("v5e", "v6e") and chips <= 8
    hosts = 1 if single_host else max(chips // 4, 1)
    return Topology(f"{gen}-{size}", chip, chips, hosts, f"{chip.gcloud_prefix}-{size}")
