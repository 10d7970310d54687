"""Faults: a real `synthflaw` process is killed with SIGKILL at five points (data loading, in
the middle of a step, during an async checkpoint write, during the HF export, during
`convert`) and hits a full disk (a file-size limit, RLIMIT_FSIZE, in the child) while saving
a checkpoint and while converting. Every rerun finishes with a result bit-identical to an
uninterrupted run; no partial output is ever visible; a full disk is one clear error on
stderr with the previous checkpoint and the input intact.

A kill point is reached by patching one function in the child (python -c) so that it sends
itself SIGKILL there; nothing in the library knows about these tests.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from synthflaw_jax import convert
from synthflaw_jax.cli import main
from tests.helpers import write_tiny_hf

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "tiny.py")
OVERRIDES = ["--config.train.steps=6", "--config.checkpoint.every=2", "--config.train.log_every=1",
             "--config.data.seq_len=64", "--config.checkpoint.keep=3"]


def patched_cli(argv, patch: str) -> list[str]:
    """The command running `synthflaw ARGV` in a fresh Python after `patch` (Python source)."""
    code = textwrap.dedent(patch) + f"\nimport sys\nfrom synthflaw_jax.cli import main\nsys.exit(main({argv!r}))\n"
    return [sys.executable, "-c", code]


def _child(argv, patch: str = "", fsize: int | None = None) -> subprocess.CompletedProcess:
    """`synthflaw ARGV` in a fresh process, after running `patch` (Python) in it; `fsize`
    limits the size of any file it writes (SIGXFSZ ignored, so a write fails with EFBIG)."""
    cmd = patched_cli(argv, patch)
    if fsize is not None:  # through the shell: no fork-time Python hook in this (threaded) process
        cmd = ["bash", "-c", f"trap '' XFSZ; ulimit -f {fsize // 1024}; exec \"$0\" \"$@\"", *cmd]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def _kill_on_call(module: str, attr: str, call: int, after: bool = True) -> str:
    """Patch `module.attr` so that its `call`-th call SIGKILLs the process (after running it,
    or before when `after` is False)."""
    obj, _, name = attr.rpartition(".")
    target = f"{module}.{obj}" if obj else module
    return f"""
        import os, signal, importlib
        import {module}
        _owner = {target}
        _orig = getattr(_owner, {name!r})
        _calls = [0]
        def _patched(*a, **k):
            _calls[0] += 1
            if _calls[0] == {call} and not {after}:
                os.kill(os.getpid(), signal.SIGKILL)
            out = _orig(*a, **k)
            if _calls[0] == {call} and {after}:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        setattr(_owner, {name!r}, _patched)
    """


def signal_in_step(signum: int, calls: tuple[int, ...], times: int = 1) -> str:
    """Child patch: the train step sends `signum` to its own process (`times` times in a row)
    right after the listed calls (counted from 1) dispatched their computation."""
    return f"""
        import os
        from synthflaw_jax import train
        _make = train.make_train_step
        def make(*a, **k):
            step, calls = _make(*a, **k), [0]
            def run(*args):
                calls[0] += 1
                out = step(*args)
                if calls[0] in {calls!r}:
                    for _ in range({int(times)}):
                        os.kill(os.getpid(), {int(signum)})
                return out
            return run
        train.make_train_step = make
    """


def _killed(result):
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr[-2000:])


def _tree_hash(path: pathlib.Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _visible(path: pathlib.Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))


def _one_error_line(result, *needles):
    # log notes (resuming, library warnings) may precede it; the error itself is one line
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "error:" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_unlearn_survives_kills_and_a_full_disk(tmp_path):
    """One workdir goes through every fault in turn, then finishes bit-identical to a straight run."""
    straight = tmp_path / "straight"
    assert main(["unlearn", "--config", CONFIG, "--workdir", str(straight), "--no-progress", *OVERRIDES]) == 0

    work = tmp_path / "work"
    argv = ["unlearn", "--config", CONFIG, "--workdir", str(work), "--no-progress", *OVERRIDES]
    steps = lambda: sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())  # noqa: E731

    # 1. data loading: killed while reading the batch of step 3
    _killed(_child(argv, _kill_on_call("synthflaw_jax.data.pipeline", "MixtureIterator.__next__", 3, after=False)))
    # 2. an async checkpoint write: killed right after the save of step 4 started
    _killed(_child(argv, _kill_on_call("synthflaw_jax.checkpoint", "TrainCheckpointer.save", 2)))
    assert steps() and max(steps()) <= 4 and not (work / "hf").exists()
    # 3. a full disk at the next save: one line on stderr, the committed steps untouched
    committed = {s: _tree_hash(work / "checkpoints" / str(s)) for s in steps()}
    result = _child(argv, fsize=1_000_000)
    _one_error_line(result, "File too large", "checkpoint", f"step {max(committed)}) is intact")
    for s, digest in committed.items():
        assert _tree_hash(work / "checkpoints" / str(s)) == digest
    assert set(steps()) == set(committed)
    # 4. the middle of a step: killed right after the step's computation was dispatched
    _killed(_child(argv, signal_in_step(signal.SIGKILL, (2,))))
    # 5. the HF export: killed after the weights were written, before the config
    _killed(_child(argv, _kill_on_call("synthflaw_jax.hf_weights", "write_safetensors", 1)))
    assert max(steps()) == 6 and not (work / "hf").exists()  # the half-written export is hidden
    assert any(p.name.startswith(".hf.tmp-") for p in work.iterdir())

    result = _child(argv)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [p for p in work.iterdir() if p.name.startswith(".")]  # the dead run's temporary dir is gone
    mask = os.umask(0)
    os.umask(mask)
    assert ((work / "hf").stat().st_mode & 0o777) == 0o777 & ~mask  # readable by others, like any mkdir
    a, b = _params(straight), _params(work)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _params(workdir):
    return convert.load_hf(workdir / "hf", progress=False)[1]


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return write_tiny_hf(tmp_path_factory.mktemp("faults_hf"), seed=1)


def test_convert_survives_a_kill_and_a_full_disk(tiny_hf, tmp_path):
    src = _tree_hash(tiny_hf)
    reference = tmp_path / "reference"
    convert.hf_to_orbax(tiny_hf, reference, progress=False)

    out = tmp_path / "ckpt"
    argv = ["convert", "hf-to-orbax", str(tiny_hf), str(out), "--no-progress"]
    # killed while streaming the tensors into the checkpoint
    _killed(_child(argv, """
        import os, signal
        from synthflaw_jax import hf_weights
        _orig = hf_weights.iter_params
        def _streaming(*a, **k):
            for i, item in enumerate(_orig(*a, **k)):
                if i == 3:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield item
        hf_weights.iter_params = _streaming
    """))
    assert _visible(tmp_path) == ["reference"]  # nothing half-written under the output's name
    # a full disk: one line, no output, the input intact
    result = _child(argv, fsize=300_000)
    _one_error_line(result, "File too large", str(out))
    assert _visible(tmp_path) == ["reference"] and not list(tmp_path.glob(".ckpt*"))
    # the rerun converts, and the kill's leftovers are cleaned up
    result = _child(argv)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _visible(tmp_path) == ["ckpt", "reference"] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    for x, y in zip(jax.tree.leaves(convert.load_model_checkpoint(reference)[1]),
                    jax.tree.leaves(convert.load_model_checkpoint(out)[1])):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()  # Orbax's file names differ per run
    assert _tree_hash(tiny_hf) == src


def test_orbax_to_hf_full_disk_keeps_the_previous_output(tiny_hf, tmp_path):
    """--overwrite over an existing export and a full disk: the old export survives, intact."""
    ckpt, hf = tmp_path / "ckpt", tmp_path / "hf"
    convert.hf_to_orbax(tiny_hf, ckpt, progress=False)
    convert.orbax_to_hf(ckpt, hf, progress=False)
    before, src = _tree_hash(hf), _tree_hash(ckpt)
    result = _child(["convert", "orbax-to-hf", str(ckpt), str(hf), "--overwrite", "--no-progress"], fsize=300_000)
    _one_error_line(result, "File too large", str(hf))
    assert _tree_hash(hf) == before and _tree_hash(ckpt) == src
    assert _visible(tmp_path) == ["ckpt", "hf"] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_outputs_get_ordinary_permissions(tiny_hf, tmp_path):
    """Directories and files the commands write follow the umask (not mkdtemp's 0700)."""
    old = os.umask(0o022)
    try:
        ckpt = convert.hf_to_orbax(tiny_hf, tmp_path / "ckpt", progress=False)
        back = convert.orbax_to_hf(ckpt, tmp_path / "back", progress=False)
    finally:
        os.umask(old)
    for path in (ckpt, back, ckpt / "params"):
        assert (path.stat().st_mode & 0o777) == 0o755, (path, oct(path.stat().st_mode))
    assert ((back / "config.json").stat().st_mode & 0o777) == 0o644
