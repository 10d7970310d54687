"""Run the planner in a child process with one fake CPU device per TPU chip, and read its answer.

JAX fixes its device count when it starts, so the parent never imports JAX: it starts
`python -m synthflaw_jax.planning.runner` with `XLA_FLAGS=--xla_force_host_platform_device_count=N`,
which loads the config, compiles the step (`planning.build`) and prints one JSON line.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Sequence

from synthflaw_jax.errors import SynthflawError

_MARK = "SYNTHFLAW_PLAN_JSON "


def topology_for(config, name: str | None):
    """The Topology named on the command line, else the config's `tpu.topology`."""
    from synthflaw_jax.tpu_specs import parse_topology

    if not name:
        tpu = config.get("tpu") if hasattr(config, "get") else None
        name = tpu.get("topology") if tpu is not None else None
    if not name:
        raise SynthflawError("plan: no --topology given and the config has no tpu.topology")
    return parse_topology(name)


def child_env(devices: int) -> dict:
    """This process's environment with XLA told to fake `devices` CPU devices."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_plan(config_path: str, overrides: Sequence[str], topology_name: str | None,
             timeout: float = 3600.0) -> dict:
    """Plan `config_path` (+ overrides) on a topology in a child process; returns its result dict."""
    from synthflaw_jax import config_io

    config = config_io.apply_overrides(config_io.load_config_file(config_path), overrides)
    topology = topology_for(config, topology_name)
    cmd = [sys.executable, "-m", "synthflaw_jax.planning.runner", config_path, topology.name, *overrides]
    try:
        proc = subprocess.run(cmd, env=child_env(topology.chips), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthflawError(f"plan: compiling for {topology.name} took longer than {timeout:.0f} s") from None
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            result = json.loads(line[len(_MARK):])
            if "error" in result:
                raise SynthflawError(result["error"])
            return result
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    raise SynthflawError(f"plan: the planning process failed (exit {proc.returncode}): "
                         f"{tail[-1] if tail else 'no output'}")


def _topology_dict(topology) -> dict:
    chip = topology.chip
    return {"name": topology.name, "accelerator_type": topology.accelerator_type, "chips": topology.chips,
            "hosts": topology.hosts, "chip": chip.name, "peak_bf16_flops": chip.peak_bf16_flops,
            "hbm_bytes": chip.hbm_bytes, "hbm_bandwidth": chip.hbm_bandwidth,
            "ici_bandwidth": chip.ici_bandwidth, "source": chip.source}


def main(argv: Sequence[str]) -> int:
    """Child entry point: CONFIG TOPOLOGY [--config.x=y ...] -> one JSON line on stdout."""
    from synthflaw_jax import config_io
    from synthflaw_jax.planning import build
    from synthflaw_jax.tpu_specs import parse_topology

    config_path, topology_name, *overrides = argv
    try:
        config = config_io.apply_overrides(config_io.load_config_file(config_path), overrides)
        topology = parse_topology(topology_name)
        result = build.compile_step(config, topology)
        result["topology"] = _topology_dict(topology)
        result["config"] = config_path
    except SynthflawError as err:
        print(_MARK + json.dumps({"error": str(err)}), flush=True)
        return 2
    print(_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
