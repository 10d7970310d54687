"""SIGTERM (a preemption notice) and Ctrl-C during `synthflaw unlearn`: the step in flight is
checkpointed, the command exits 128 + the signal number with one line saying so, and a rerun
resumes from that step and finishes bit-identical to an uninterrupted run.

The signal is sent by the child to itself from a patched train step (`signal_in_step`, as
test_faults.py sends SIGKILL): it arrives while a step is running, as a scheduler's does."""
from __future__ import annotations

import json
import pathlib
import signal
import threading

import jax
import numpy as np
import pytest

from synthflaw_jax import stopping
from synthflaw_jax.cli import main
from tests.test_faults import CONFIG, _child, _params, signal_in_step

ARGS = ["--config.train.steps=6", "--config.checkpoint.every=100", "--config.train.log_every=1",
        "--config.data.seq_len=64", "--config.checkpoint.keep=3"]


def _steps(work: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())


def test_sigterm_checkpoints_the_step_and_the_rerun_finishes_identically(tmp_path):
    straight = tmp_path / "straight"
    assert main(["unlearn", "--config", CONFIG, "--workdir", str(straight), "--no-progress", *ARGS]) == 0

    work = tmp_path / "work"
    argv = ["unlearn", "--config", CONFIG, "--workdir", str(work), "--no-progress", *ARGS]
    result = _child(argv, signal_in_step(signal.SIGTERM, (3,)))
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("synthflaw unlearn: stopped at step 3 on SIGTERM"), result.stderr[-3000:]
    assert "synthflaw unlearn: SIGTERM received; checkpointing step 3 and stopping" in result.stderr
    assert _steps(work) == [3]  # saved although checkpoint.every is 100
    assert not (work / "hf").exists() and not (work / "summary.json").exists()

    result = _child(argv)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((work / "summary.json").read_text())["resumed_from"] == 3
    for a, b in zip(jax.tree.leaves(_params(straight)), jax.tree.leaves(_params(work))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_ctrl_c_saves_and_a_second_one_stops_at_once(tmp_path):
    work = tmp_path / "work"
    argv = ["unlearn", "--config", CONFIG, "--workdir", str(work), "--no-progress", *ARGS]
    result = _child(argv, signal_in_step(signal.SIGINT, (2,)))
    assert result.returncode == 130, result.stderr[-3000:]
    assert "stopped at step 2 on SIGINT" in result.stderr.strip().splitlines()[-1]
    assert _steps(work) == [2]

    # twice in one step: no save, the ordinary "interrupted"; the saved step 2 is untouched
    result = _child(argv, signal_in_step(signal.SIGINT, (1,), times=2))
    assert result.returncode == 130, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == "synthflaw unlearn: interrupted"
    assert _steps(work) == [2]


def test_handlers_are_restored_and_only_installed_in_the_main_thread():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with stopping.StopSignals("t") as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._on_signal
        assert not stop.should_stop(1)
        signal.raise_signal(signal.SIGTERM)
        assert stop.should_stop(1) and stop.signum == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before
    assert stopping.RunStopped(5, signal.SIGTERM).exit_code == 143

    seen = []
    thread = threading.Thread(target=lambda: seen.append(stopping.StopSignals("t").__enter__()._previous))
    thread.start()
    thread.join()
    assert seen == [{}]  # signal handlers can only be set from the main thread


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_message_names_the_signal_and_the_way_back(signum):
    text = str(stopping.RunStopped(7, signum))
    assert text.startswith(f"stopped at step 7 on {signal.Signals(signum).name}")
    assert "run the same command again to resume" in text
