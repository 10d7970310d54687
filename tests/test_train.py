"""The sharded train step, gradient accumulation, checkpoint resume and NaN handling."""
import json
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthflaw_jax import train, unlearn
from synthflaw_jax.cli import main
from synthflaw_jax.models import llama, presets
from synthflaw_jax.sharding import make_mesh

CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "tiny.py")


def small_config(**changes):
    c = unlearn.default_config()
    c.data.seq_len = 64
    c.data.batch_size = 8
    c.train.steps = 6
    c.train.log_every = 2
    c.checkpoint.every = 3
    c.checkpoint.async_save = True
    c.optim.warmup_steps = 1
    c.optim.learning_rate = 1e-3
    for key, value in changes.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def _fake_batch(rows, seq, vocab, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, (rows, seq)).astype(np.int32)
    mask = np.ones((rows, seq), np.int32)
    mask[:, : seq // 4] = 0  # prompt
    return {"input_ids": ids, "loss_mask": mask, "segment_ids": np.ones((rows, seq), np.int32),
            "positions": np.broadcast_to(np.arange(seq, dtype=np.int32), (rows, seq)).copy()}


def _run_steps(mesh, loss_cfg, grad_accum=1, steps=3):
    cfg = presets.tiny(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2)
    c = small_config()
    c.loss.update(loss_cfg)
    schedule = train.make_schedule(c.optim, 10)
    tx = train.make_optimizer(c.optim, schedule)
    shardings = train.state_shardings(cfg, tx, mesh)
    params = llama.init_params(cfg, jax.random.key(0), mesh)
    needs = train.reference_needs(c.loss)
    ref = jax.tree.map(jnp.copy, params) if needs.any else None
    state = train.create_state(params, tx, shardings, 0)
    step = train.make_train_step(cfg, c.loss, tx, schedule, mesh, shardings, grad_accum)
    metrics = []
    for i in range(steps):
        batch = {"forget": _fake_batch(8, 16, 128, i), "replay": _fake_batch(8, 16, 128, 100 + i)}
        state, m = step(state, batch, ref)
        metrics.append(jax.device_get(m))
    return state, metrics


def _assert_trees_close(a, b, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-4)


@pytest.mark.parametrize("method, mesh_shape", [("lower_bounded", (1, 4, 2)), ("npo", (8, 1, 1))])
def test_one_device_equals_eight_devices(method, mesh_shape):
    one, m1 = _run_steps(make_mesh(1, 1, 1, devices=jax.devices()[:1]), {"method": method})
    eight, m8 = _run_steps(make_mesh(*mesh_shape), {"method": method})
    w = eight.params["layers"]["mlp"]["gate_proj"]["kernel"]
    assert len(w.sharding.device_set) == 8
    mu = eight.opt_state[1][0].mu["layers"]["mlp"]["gate_proj"]["kernel"]
    assert mu.sharding == w.sharding  # optimizer moments sharded like their params
    assert eight.opt_state[1][0].count.sharding.is_fully_replicated
    for a, b in zip(m1, m8):
        assert abs(a["loss"] - b["loss"]) < 1e-4
    _assert_trees_close(one.params, eight.params, atol=2e-5)
    assert int(one.step) == 3


def test_gradient_accumulation_matches_full_batch():
    mesh = make_mesh(1, -1, 1)
    loss_cfg = {"method": "ga"}  # mean over examples: equal-sized microbatches average exactly
    full, _ = _run_steps(mesh, loss_cfg, grad_accum=1, steps=2)
    accum, _ = _run_steps(mesh, loss_cfg, grad_accum=4, steps=2)
    _assert_trees_close(full.params, accum.params, atol=2e-6)


def test_step_skips_non_finite_update():
    mesh = make_mesh(1, -1, 1)
    cfg = presets.tiny(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2)
    c = small_config()
    schedule = train.make_schedule(c.optim, 10)
    tx = train.make_optimizer(c.optim, schedule)
    shardings = train.state_shardings(cfg, tx, mesh)
    params = llama.init_params(cfg, jax.random.key(0), mesh)
    params["norm"]["scale"] = params["norm"]["scale"].at[0].set(jnp.nan)
    before = jax.device_get(params)
    state = train.create_state(params, tx, shardings, 0)
    step = train.make_train_step(cfg, c.loss, tx, schedule, mesh, shardings)
    batch = {"forget": _fake_batch(8, 16, 128, 0), "replay": _fake_batch(8, 16, 128, 1)}
    state, m = step(state, batch, jax.tree.map(jnp.copy, state.params))
    assert float(m["finite"]) == 0.0 and int(state.step) == 0
    after = jax.device_get(state.params)
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(x, y)


def _params(workdir):
    from synthflaw_jax.convert import load_hf

    return load_hf(pathlib.Path(workdir) / "hf", progress=False)[1]


def test_kill_9_then_rerun_resumes_bit_identical(tmp_path):
    """SIGKILL a real `synthflaw unlearn` process after its first checkpoint; the rerun resumes
    and ends with exactly the parameters of an uninterrupted run."""
    overrides = ["--config.train.steps=16", "--config.checkpoint.every=4", "--config.train.log_every=2",
                 "--config.data.seq_len=64", "--config.checkpoint.keep=3"]
    straight = tmp_path / "straight"
    assert main(["unlearn", "--config", CONFIG, "--workdir", str(straight), "--no-progress", *overrides]) == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "synthflaw_jax", "unlearn", "--config", CONFIG, "--workdir", str(killed),
           "--no-progress", *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "4").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "hf").exists()

    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from step" in result.stdout
    a, b = _params(straight), _params(killed)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # steps replayed after the kill are logged once, with the uninterrupted run's values
    rows_straight, rows_killed = _metrics(straight), _metrics(killed)
    assert [r["step"] for r in rows_killed] == list(range(1, 17))
    assert [r["loss"] for r in rows_killed] == [r["loss"] for r in rows_straight]


def _metrics(workdir):
    return [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def test_metrics_written_as_jsonl_and_tensorboard(tmp_path):
    work = tmp_path / "w"
    unlearn.run(small_config(**{"train.steps": 2, "train.log_every": 1}), work, progress=False)
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("loss", "forget_loss", "replay_loss", "bias_loss", "frac_at_bound", "grad_norm", "lr",
                "tokens_per_s"):
        assert np.isfinite(rows[-1][key]), key
    tags = _tensorboard_scalars(next((work / "tensorboard").glob("events.out.tfevents.*")))
    assert tags["unlearn/loss"] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    assert json.loads((work / "config.json").read_text())["train"]["steps"] == 2


def _tensorboard_scalars(path):
    """Scalars of a TensorBoard event file, read with the TFRecord framing and the Event proto."""
    from tensorboardX.proto import event_pb2

    data, out, pos = path.read_bytes(), {}, 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        for value in event.summary.value:
            out.setdefault(value.tag, []).append(value.simple_value)
    return out


def _purge_step(path):
    """The step of the event that tells TensorBoard to hide earlier events from that step on."""
    from tensorboardX.proto import event_pb2

    data, pos = path.read_bytes(), 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        if event.file_version and event.step:
            return event.step
    return None


def test_damaged_latest_checkpoint_falls_back(tmp_path, caplog):
    work = tmp_path / "w"
    unlearn.run(small_config(**{"checkpoint.keep": 3}), work, progress=False)
    steps = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 6]
    state_dir = work / "checkpoints" / "6" / "state"
    for f in state_dir.rglob("*"):
        if f.is_file() and "manifest" in f.name:
            f.unlink()
    shutil.rmtree(state_dir / "d", ignore_errors=True)
    (work / "hf").rename(tmp_path / "hf_first")
    first_rows = _metrics(work)
    assert [r["step"] for r in first_rows] == [1, 2, 3, 4, 5, 6]
    with (work / "metrics.jsonl").open("a") as f:
        f.write('{"step": 7, "loss"')  # a line cut short by a kill
    result = unlearn.run(small_config(**{"checkpoint.keep": 3}), work, progress=False)
    assert result.resumed_from == 3
    assert "cannot be restored" in caplog.text
    rows = _metrics(work)  # steps 4-6 replayed: each still logged once, nothing half-written left
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[:3] == first_rows[:3]
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in first_rows], rel=1e-6)
    events = sorted((work / "tensorboard").glob("events.out.tfevents.*"), key=lambda f: f.stat().st_mtime)
    assert len(events) == 2 and _purge_step(events[-1]) == 4  # TensorBoard hides the first run's 4-6
    for x, y in zip(jax.tree.leaves(_params(work)), jax.tree.leaves(
            __import__("synthflaw_jax.convert", fromlist=["load_hf"]).load_hf(tmp_path / "hf_first", progress=False)[1])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_nan_stops_cleanly_without_saving(tmp_path, capsys):
    work = tmp_path / "nan"
    code = main(["unlearn", "--config", CONFIG, "--workdir", str(work), "--no-progress",
                 "--config.optim.learning_rate=1e30", "--config.optim.grad_clip=0.0",
                 "--config.optim.warmup_steps=0", "--config.train.steps=8", "--config.train.log_every=1",
                 "--config.checkpoint.every=1", "--config.data.seq_len=64"])
    captured = capsys.readouterr()
    assert code == unlearn.EXIT_DIVERGED, captured.out
    assert "non-finite at step" in captured.err and "non-finite" not in captured.out  # a stop message
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    bad = min(r["step"] for r in rows if r["finite"] == 0.0)
    saved = [int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit()]
    assert all(s < bad for s in saved)
    assert not (work / "hf").exists()


def test_cli_rejects_changed_config_and_bad_override(tmp_path, capsys):
    work = tmp_path / "w"
    args = ["unlearn", "--config", CONFIG, "--workdir", str(work), "--no-progress", "--config.train.steps=2",
            "--config.data.seq_len=64"]
    assert main(args) == 0
    assert (work / "hf" / "model.safetensors").exists()
    capsys.readouterr()
    assert main(args[:-2] + ["--config.train.steps=3", "--config.data.seq_len=64"]) == 2
    assert "different config (train.steps: 2 -> 3)" in capsys.readouterr().err
    assert main(args + ["--config.loss.method=magic"]) == 2
    assert main(["unlearn", "--config", CONFIG, "--workdir", str(tmp_path / "x"), "--config.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "config has no field 'nope'" in err
