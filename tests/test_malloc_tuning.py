"""Commands that run models re-execute themselves once with glibc's huge-page tunable (malloc_tuning.py)."""
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
