"""Multi-host runtime: two local JAX processes (4 fake CPU devices each) run `synthflaw unlearn`
as one 8-device job, and the runtime's detection / mesh / path logic."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from synthflaw_jax import checkpoint, runtime, unlearn
from synthflaw_jax import sharding as shd
from synthflaw_jax.config_io import apply_overrides, load_config_file
from synthflaw_jax.data import pipeline
from synthflaw_jax.errors import SynthflawError
from tests.test_faults import patched_cli, signal_in_step

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "tiny.py")
# 16 rows per step = 8 forget + 8 replay: each stream's rows shard over the 8 devices, so each
# host's devices hold exactly that host's 4 rows (the pod path: no host sees another's data).
OVERRIDES = ["--config.train.steps=3", "--config.train.log_every=1", "--config.checkpoint.every=2",
             "--config.data.batch_size=16"]


def _free_port() -> int:
    import portpicker

    return portpicker.pick_unused_port()


def _run_two_processes(workdir: pathlib.Path, timeout: float = 400, overrides=OVERRIDES, patches=("", ""),
                       returncode: int = 0) -> list[str]:
    """`synthflaw unlearn` as a two-process job; process i first runs `patches[i]` (Python, as
    test_faults.py's children do). Both must exit with `returncode`."""
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = []
    for i in range(2):
        argv = ["unlearn", "--config", CONFIG, "--workdir", str(workdir), "--no-progress", *overrides,
                "--config.runtime.distributed=on", f"--config.runtime.coordinator_address=127.0.0.1:{port}",
                "--config.runtime.num_processes=2", f"--config.runtime.process_id={i}"]
        cmd = patched_cli(argv, patches[i]) if patches[i] else [sys.executable, "-m", "synthflaw_jax", *argv]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    deadline = time.monotonic() + timeout
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(deadline - time.monotonic(), 1))
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == returncode, f"process {i} exited {p.returncode}:\n{out[-3000:]}"
    return outputs


class _BothHosts:
    """The mixture a 2-host job reads, concatenated host 0 then host 1 per stream: the global
    batch of the two-process run, fed to one process."""

    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return self

    def __next__(self):
        batches = [next(p) for p in self.parts]
        return {name: {k: np.concatenate([b[name][k] for b in batches]) for k in batches[0][name]}
                for name in batches[0]}

    def get_state(self):
        return self.parts[0].get_state()

    def set_state(self, state):
        raise AssertionError("the reference run does not resume")


def test_two_processes_match_one_process_fed_the_same_global_batches(tmp_path, monkeypatch):
    """Two processes x 4 devices train the tiny config as one job; one process with 8 devices,
    fed the same global batches, ends with the same params.

    Why "fed the same global batches": each host reads its own share of the shuffled records
    (grain's `[process_index::process_count]`), and with packing a row holds several
    examples, so 2 hosts x 4 rows are not the rows one host packs from the same records in
    order: a plain single-process run trains on other batches by design. The reference run
    therefore reads both hosts' shares and concatenates them (host 0's rows, then host 1's,
    the global row order of the mesh), and must then reach the same losses and params; the
    only difference left is the cross-process all-reduces (gloo instead of in-process), so
    params are compared to float32 rounding (they agree to ~1e-7 here).
    """
    two = tmp_path / "two"
    outputs = _run_two_processes(two)
    assert all("unlearned to step 3" in out for out in outputs)
    # one set of outputs, written once (process 0): no temporary or per-host leftovers
    assert sorted(p.name for p in two.iterdir()) == ["checkpoints", "config.json", "hf", "metrics.jsonl",
                                                      "summary.json", "tensorboard"]
    assert "runtime" not in json.loads((two / "config.json").read_text())
    assert [json.loads(line)["step"] for line in (two / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert sorted(int(p.name) for p in (two / "checkpoints").iterdir()) == [2, 3]
    data_state = json.loads((two / "checkpoints" / "3" / "data" / "metadata").read_text())
    assert [s["forget"]["process_index"] for s in data_state["per_process"]] == [0, 1]

    original = pipeline.build_mixture
    monkeypatch.setattr(pipeline, "build_mixture", lambda config, **kw: _BothHosts(
        [original(config, process_index=i, process_count=2, **kw) for i in range(2)]))
    config = apply_overrides(load_config_file(CONFIG), OVERRIDES)
    assert jax.device_count() == 8
    one = tmp_path / "one"
    unlearn.run(config, one, progress=False)

    losses = [[json.loads(line)["loss"] for line in (w / "metrics.jsonl").read_text().splitlines()]
              for w in (two, one)]
    # the loss is a sum of terms of ~8 nats of both signs (configs/tiny.py's forget term is
    # about -8): compare at float32 rounding of the terms, not of their near-cancelling sum
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6, atol=1e-5)
    a, b = load_file(two / "hf" / "model.safetensors"), load_file(one / "hf" / "model.safetensors")
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_sigterm_on_one_host_makes_both_save_the_same_step_and_the_rerun_resumes(tmp_path):
    """A preemption notice (SIGTERM) to process 1 only, during its third step: JAX's preemption
    service tells both hosts, both checkpoint the same step and exit 143; the rerun resumes
    from that step and finishes."""
    work = tmp_path / "work"
    overrides = ["--config.train.steps=6", "--config.train.log_every=1", "--config.checkpoint.every=100",
                 "--config.data.batch_size=16"]
    outputs = _run_two_processes(work, overrides=overrides, patches=("", signal_in_step(signal.SIGTERM, (3,))),
                                 returncode=128 + signal.SIGTERM)
    stopped = [[line for line in out.splitlines() if line.startswith("synthflaw unlearn: stopped at step")]
               for out in outputs]
    assert all(len(s) == 1 for s in stopped), outputs[0][-2000:]
    assert stopped[0] == stopped[1]  # the same step on both hosts
    step = int(stopped[0][0].split()[5])
    assert 3 <= step < 6
    assert sorted(int(p.name) for p in (work / "checkpoints").iterdir()) == [step]
    assert "every host is checkpointing step" in outputs[0]  # process 0 got no signal itself

    outputs = _run_two_processes(work, overrides=overrides)
    assert all("unlearned to step 6 (resumed from step %d)" % step in out for out in outputs), outputs[0][-2000:]
    assert [json.loads(line)["step"] for line in (work / "metrics.jsonl").read_text().splitlines()] == list(range(1, 7))


# --------------------------------------------------------------------------- unit tests
def _rt(**changes):
    rt = runtime.default_runtime_config()
    rt.update(changes)
    return rt


def test_should_initialize_modes_and_tpu_environment():
    assert runtime.should_initialize(_rt(distributed="off"), {"MEGASCALE_NUM_SLICES": "2"})[0] is False
    assert runtime.should_initialize(_rt(distributed="on"), {})[0] is True
    assert runtime.should_initialize(_rt(), {})[0] is False
    assert runtime.should_initialize(_rt(), {"TPU_WORKER_HOSTNAMES": "10.0.0.2"})[0] is False  # one host
    assert runtime.should_initialize(_rt(), {"TPU_WORKER_HOSTNAMES": "10.0.0.2,10.0.0.3"}) == (
        True, "TPU_WORKER_HOSTNAMES names 2 hosts")
    assert runtime.should_initialize(_rt(), {"MEGASCALE_NUM_SLICES": "2"})[0] is True
    assert runtime.should_initialize(_rt(), {"MEGASCALE_NUM_SLICES": "1"})[0] is False
    assert runtime.should_initialize(_rt(), {"MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.2:8080"})[0] is True
    assert runtime.should_initialize(_rt(num_processes=2), {})[0] is True
    with pytest.raises(SynthflawError, match="runtime.distributed"):
        runtime.should_initialize(_rt(distributed="yes"), {})
    assert runtime.initialize(unlearn.default_config()) is False  # this test process: one host


def test_hybrid_mesh_shapes():
    assert runtime.hybrid_mesh_shapes(1, -1, 1, 8) == ((1, 8, 1), (1, 1, 1))
    assert runtime.hybrid_mesh_shapes(2, -1, 2, 16) == ((2, 4, 2), (1, 1, 1))
    # two slices of 64 chips: data parallel over DCN, FSDP inside each slice
    assert runtime.hybrid_mesh_shapes(1, -1, 1, 128, slices=2) == ((1, 64, 1), (2, 1, 1))
    assert runtime.hybrid_mesh_shapes(4, -1, 1, 128, slices=2) == ((2, 32, 1), (2, 1, 1))
    assert runtime.hybrid_mesh_shapes(-1, 8, 2, 128, slices=4) == ((2, 8, 2), (4, 1, 1))
    with pytest.raises(SynthflawError, match="multiple of the 2 slices"):
        runtime.hybrid_mesh_shapes(3, -1, 1, 96, slices=2)
    with pytest.raises(SynthflawError, match="per slice"):
        runtime.hybrid_mesh_shapes(1, 3, 1, 16, slices=2)
    with pytest.raises(SynthflawError, match="do not split"):
        runtime.hybrid_mesh_shapes(1, -1, 1, 10, slices=4)


def test_make_mesh_single_slice_keeps_device_order():
    c = unlearn.default_config()
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, -1, 2
    mesh = runtime.make_mesh(c.mesh)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert (mesh.devices == shd.make_mesh(2, -1, 2).devices).all()


class _FakeSharding:
    def __init__(self, row_slices):
        self.row_slices = row_slices

    def addressable_devices_indices_map(self, shape):
        return {i: (s, slice(None)) for i, s in enumerate(self.row_slices)}


def test_rows_split_by_host():
    """A host passes only its own rows when its devices hold exactly one block of that many rows;
    otherwise (rows replicated) the hosts' rows are gathered first."""
    ok = _FakeSharding([slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)])
    assert unlearn._rows_split_by_host(ok, (16, 8), 8)
    assert not unlearn._rows_split_by_host(_FakeSharding([slice(None)] * 4), (8, 8), 4)
    assert not unlearn._rows_split_by_host(_FakeSharding([slice(0, 2), slice(8, 10)]), (16, 8), 4)


def test_single_process_data_state_is_saved_as_is():
    state = {"forget": {"position": 3, "tokens": 2**40}}
    assert checkpoint._gather_data_state(state) is state
    assert checkpoint._own_data_state(state) is state
    assert checkpoint._own_data_state({"per_process": [state, {}]}) == state


def test_bucket_paths_stay_bucket_paths(tmp_path):
    remote = runtime.as_path("gs://bucket/runs/a")
    assert runtime.is_remote(remote) and str(remote / "hf") == "gs://bucket/runs/a/hf"
    assert isinstance(runtime.as_path(tmp_path), pathlib.Path) and not runtime.is_remote(tmp_path)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.json").write_text("{}")
    (src / "sub" / "b.bin").write_bytes(b"\0" * 10)
    runtime.copy_tree(src, tmp_path / "dst")
    assert (tmp_path / "dst" / "sub" / "b.bin").read_bytes() == b"\0" * 10
