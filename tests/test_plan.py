"""`synthflaw plan`: TPU slice names, the HLO FLOP/collective counter, and the Llama-2-7B plan
on 8 and 64 fake devices (each in its own process) against the analytic state bytes."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthflaw_jax import cli
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.planning import estimate, hlo, report, runner
from synthflaw_jax.tpu_specs import CHIPS, parse_topology

REPO = pathlib.Path(__file__).resolve().parents[1]
LLAMA2_7B = str(REPO / "configs" / "llama2_7b.py")


def _cli(argv):
    return cli.main(argv)


@pytest.mark.parametrize("name,chips,hosts,accel", [
    ("v5p-128", 64, 16, "v5p-128"), ("v5p-16", 8, 2, "v5p-16"), ("v5e-16", 16, 4, "v5litepod-16"),
    ("v5litepod-8", 8, 1, "v5litepod-8"), ("v6e-256", 256, 64, "v6e-256"), ("v4-8", 4, 1, "v4-8"),
    ("v4-32", 16, 4, "v4-32"), ("v6e-4", 4, 1, "v6e-4"),
])
def test_topologies(name, chips, hosts, accel):
    t = parse_topology(name)
    assert (t.chips, t.hosts, t.accelerator_type) == (chips, hosts, accel)


@pytest.mark.parametrize("bad", ["v5p-12", "v7-8", "tpu", "v5e-512", "v4-4", ""])
def test_bad_topologies(bad):
    with pytest.raises(SynthflawError):
        parse_topology(bad)


def test_chip_table_has_sources_and_sane_figures():
    for chip in CHIPS.values():
        assert chip.source.startswith("https://cloud.google.com/tpu/docs/")
        assert 100e12 < chip.peak_bf16_flops < 2e15 and chip.hbm_bytes >= 16 * 2**30


def test_hlo_counter_multiplies_loop_bodies_by_trip_count():
    """A scan of 5 matmuls: XLA's cost_analysis counts the body once, the HLO walk 5 times."""
    m, k, n, steps = 64, 128, 32, 5

    def f(x, ws):
        def body(carry, w):
            return carry, x @ w
        return jax.lax.scan(body, 0.0, ws)[1]

    compiled = jax.jit(f).lower(jnp.ones((m, k)), jnp.ones((steps, k, n))).compile()
    stats = hlo.analyze(compiled.as_text(), 1)
    assert stats.dot_flops == pytest.approx(2 * m * k * n * steps)
    assert steps in stats.loops


def test_hlo_counter_collectives_on_a_sharded_program():
    mesh = jax.make_mesh((8,), ("x",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    arg = jax.ShapeDtypeStruct((1024,), jnp.float32, sharding=sharding)
    compiled = jax.jit(lambda a: a * 2, out_shardings=replicated).lower(arg).compile()
    stats = hlo.analyze(compiled.as_text(), 8)
    # an all-gather of 4 KiB: each device receives 7/8 of it
    assert stats.total_collective_bytes == pytest.approx(4096 * 7 / 8)
    assert stats.collective_ops == {"all-gather": 1}


def test_roofline_arithmetic():
    topo = parse_topology("v5p-16")
    r = estimate.roofline(topo, flops_per_chip=459e12, hbm_bytes_per_chip=0.0, collective_bytes_per_chip=0.0,
                          useful_flops_global=8 * 459e12 * 0.5, policy_tokens=1000)
    assert r["step_s_overlap"] == pytest.approx(1.0) and r["mfu_overlap"] == pytest.approx(0.5)
    assert r["bound"] == "compute"


def test_bad_topology_exits_2(capsys):
    assert _cli(["plan", "--config", LLAMA2_7B, "--topology", "v9x-8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "topology" in err[0]


def test_missing_config_exits_2(capsys):
    assert _cli(["plan", "--config", "/nonexistent/c.py"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def plans():
    """Llama-2-7B planned for v5p-16 (8 chips, the config's slice) and v5p-128 (64 chips)."""
    return {8: runner.run_plan(LLAMA2_7B, [], None), 64: runner.run_plan(LLAMA2_7B, [], "v5p-128")}


@pytest.mark.parametrize("devices", [8, 64])
def test_llama2_7b_state_bytes_match_analytic(plans, devices):
    r = plans[devices]
    assert r["topology"]["chips"] == devices and r["mesh"]["fsdp"] == devices
    mem = r["memory_per_device"]
    n = 6_738_415_616
    params_opt = 3 * n * 4 / devices  # fp32 params + AdamW mu, nu, split evenly
    assert mem["analytic"]["params"] + mem["analytic"]["optimizer"] == pytest.approx(params_opt)
    sharded = mem["from_shardings"]["params"] + mem["from_shardings"]["optimizer"]
    assert abs(sharded - params_opt) / params_opt < 0.05
    # XLA's argument bytes (params, optimizer, frozen reference params) against the analytic total
    assert abs(mem["state_xla"] - mem["state_analytic"]) / mem["state_analytic"] < 0.05
    assert mem["xla"]["temp_size_in_bytes"] > 0


def test_llama2_7b_flops_and_report(plans):
    r8, r64 = plans[8], plans[64]
    # same global step on both: same model FLOPs; compiled matmuls within 10% of the analytic count
    assert r8["flops"]["model_per_step"] == r64["flops"]["model_per_step"]
    for r in (r8, r64):
        fl = r["flops"]
        assert abs(fl["hlo_dot_per_step"] - fl["hardware_analytic_per_step"]) / fl["hardware_analytic_per_step"] < 0.1
        assert fl["cost_analysis_per_device"] < fl["hlo_dot_per_device"]  # loop bodies counted once
        assert 0 < r["roofline"]["mfu_serial"] <= r["roofline"]["mfu_overlap"] <= 1
    text = report.format_plan(r8)
    assert "XLA:CPU estimate" in text and "[estimate" in text and "verdict:" in text
    assert r8["fits"] is True  # 7B with fp32 AdamW on 95 GiB v5p chips


def test_child_env_replaces_device_count(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_foo=1")
    env = runner.child_env(64)
    assert "count=64" in env["XLA_FLAGS"] and "count=8" not in env["XLA_FLAGS"] and "--xla_foo=1" in env["XLA_FLAGS"]


def test_plan_cli_json(tmp_path, capsys):
    """The whole command on the tiny config (2 devices): JSON out, exit 0."""
    assert _cli(["plan", "--config", str(REPO / "configs" / "tiny.py"), "--topology", "v5e-4", "--json",
                 "--config.data.batch_size=8"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["topology"]["chips"] == 4 and result["model"]["source"] == "tiny"
    assert np.isfinite(result["roofline"]["step_s_overlap"])
