"""The --overwrite contract (synthflaw_jax.outputs) on its own: replace, refuse, recover."""
import os
import subprocess
import sys

import pytest

from synthflaw_jax import outputs
from synthflaw_jax.errors import SynthflawError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_directory_replaces_only_when_complete(tmp_path):
    out = tmp_path / "out"
    with outputs.directory(out) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(SynthflawError, match="not empty"):
        with outputs.directory(out) as tmp:
            pass
    with pytest.raises(RuntimeError):
        with outputs.directory(out, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash while writing")
    assert (out / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with outputs.directory(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("two")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_modes_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with outputs.directory(tmp_path / "d") as tmp:
            pass
        outputs.write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o640


def test_leftovers_of_a_dead_run_are_removed_and_an_interrupted_swap_is_undone(tmp_path):
    pid = _dead_pid()
    out = tmp_path / "out"
    # killed between moving the old output aside and moving the new one in
    old = tmp_path / f".out.old-{pid}-abc"
    old.mkdir()
    (old / "keep.txt").write_text("previous")
    half = tmp_path / f".out.tmp-{pid}-def"
    half.mkdir()
    with pytest.raises(SynthflawError, match="not empty"):
        outputs.check(out)  # the previous output is back, so it is protected again
    assert (out / "keep.txt").read_text() == "previous"
    with outputs.directory(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_live_process_keeps_its_temporary_directory(tmp_path):
    mine = tmp_path / f".out.tmp-{os.getppid()}-xyz"  # a live process (our parent) is working there
    mine.mkdir()
    with outputs.directory(tmp_path / "out"):
        pass
    assert mine.is_dir()


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_nested_inputs_are_refused_even_with_overwrite(tmp_path, kind):
    src = tmp_path / "model"
    src.mkdir()
    link = tmp_path / "link"
    link.symlink_to(src)
    for out, message in ((src, "is the input"), (link, "is the input"), (src / "x", "is inside the input"),
                         (tmp_path, "contains the input")):
        with pytest.raises(SynthflawError, match=message):
            outputs.check(out, overwrite=True, kind=kind, inputs=[src])
