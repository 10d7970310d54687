"""Commands that run models re-execute themselves once with their glibc heap tunables (malloc_tuning.py)."""
import os
import subprocess
import sys

import numpy as np

from synthflaw_jax import malloc_tuning
from synthflaw_jax.models import presets
from synthflaw_jax.models.loading import random_model
from synthflaw_jax import convert
from synthflaw_jax.hf_weights import SafetensorsReader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_model_commands_relaunch_never_twice():
    env = {}
    usable = malloc_tuning.should_relaunch(["convert", "hf-to-orbax", "a", "b"], env)
    assert malloc_tuning.command_of(["-v", "convert", "orbax-to-hf"]) == "convert"
    assert malloc_tuning.should_relaunch(["unlearn", "--workdir", "w"], env) == usable
    assert not malloc_tuning.should_relaunch(["plan", "--config", "c.py"], env)  # compiles, runs nothing
    assert not malloc_tuning.should_relaunch(["--help"], env)
    assert not malloc_tuning.should_relaunch(["-v", "convert", "x"], {malloc_tuning.RELAUNCHED: "1"})
    assert not malloc_tuning.should_relaunch(["convert", "x"], {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert usable == malloc_tuning.should_relaunch(["-v", "convert", "x"], {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    # unlearn has more tunables than huge pages: a user who set one still gets the others
    assert usable == malloc_tuning.should_relaunch(["unlearn", "x"], {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    every = ":".join(malloc_tuning.tunables_for("unlearn"))
    assert not malloc_tuning.should_relaunch(["unlearn", "x"], {"GLIBC_TUNABLES": every})


def test_relaunch_adds_the_commands_tunables_and_keeps_the_users():
    user = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.mem.tagging=0"}
    items = malloc_tuning.relaunch_environment(["unlearn", "--workdir", "w"], user)["GLIBC_TUNABLES"].split(":")
    assert items[:2] == ["glibc.malloc.arena_max=2", "glibc.mem.tagging=0"]
    assert "glibc.malloc.arena_max=1" not in items  # the user's value wins
    assert {"glibc.malloc.hugetlb=1", "glibc.malloc.mmap_max=0", "glibc.malloc.trim_threshold=4294967296"} <= set(items)
    env = malloc_tuning.relaunch_environment(["convert", "orbax-to-hf", "a", "b"], {})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"  # a heap that only grows measured slower there
    assert env[malloc_tuning.RELAUNCHED] == "1"


def test_the_relaunched_command_converts_the_same(tmp_path):
    cfg = presets.tiny()
    hf = convert.save_hf(random_model(cfg, seed=0).params, cfg, tmp_path / "hf", progress=False)
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", malloc_tuning.RELAUNCHED)}
    env["PYTHONPATH"] = REPO
    for direction, src, dst in (("hf-to-orbax", hf, tmp_path / "ckpt"), ("orbax-to-hf", tmp_path / "ckpt", tmp_path / "back")):
        proc = subprocess.run([sys.executable, "-m", "synthflaw_jax", "-v", "convert", direction, str(src), str(dst),
                               "--no-progress"], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        relaunched = "running with GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in proc.stderr
        assert relaunched == malloc_tuning.should_relaunch(["convert"], env)  # on this machine's glibc and kernel
    a, b = SafetensorsReader(hf), SafetensorsReader(tmp_path / "back")
    assert sorted(a.names()) == sorted(b.names())
    for name in a.names():
        np.testing.assert_array_equal(a.get(name), b.get(name), err_msg=name)


def test_the_relaunched_generate_writes_the_same_text(tmp_path):
    """generate keeps freed memory in one heap (no mmap, no trim, one arena): same greedy text."""
    import json

    import synthflaw_jax
    from tests.test_generate import make_tiny_model_dir

    model_dir = make_tiny_model_dir(tmp_path / "hf")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", malloc_tuning.RELAUNCHED)}
    env["PYTHONPATH"] = REPO
    proc = subprocess.run([sys.executable, "-m", "synthflaw_jax", "-v", "generate", "--model", str(model_dir),
                           "--prompt", "Tell me a story", "--max-new-tokens", "8", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    relaunched = "running with GLIBC_TUNABLES=" + ":".join(malloc_tuning.tunables_for("generate")) in proc.stderr
    assert relaunched == malloc_tuning.should_relaunch(["generate"], env)
    written = json.loads(proc.stdout.strip().splitlines()[-1])["response"]
    assert written == synthflaw_jax.load(model_dir).generate(["Tell me a story"], 8)[0]
