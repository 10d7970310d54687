"""The page-cache-bypassing writer: the bytes on disk are exactly what was written, whatever the
mix of aligned and unaligned pieces, and it falls back to ordinary writes where O_DIRECT is refused."""
import errno
import mmap
import os

import numpy as np
import pytest

from synthflaw_jax import hf_weights, uncached_io
from synthflaw_jax.uncached_io import BLOCK, STAGING_BYTES, SequentialWriter


def _pieces(rng):
    """Arrays and bytes of awkward sizes, some block-aligned in memory and some not."""
    pieces = []
    for n in (0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK, STAGING_BYTES + 5 * BLOCK + 3, 2 * BLOCK):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        aligned = hf_weights.aligned_empty((n,), np.uint8, align=BLOCK)
        aligned[...] = data
        pieces += [aligned, bytes(data[: n // 3]), data[1:]]  # data[1:] is never block-aligned
    floats = hf_weights.aligned_empty((3, BLOCK), np.float32, align=BLOCK)
    floats[...] = rng.standard_normal(floats.shape)
    pieces.append(floats)
    return pieces


def _expected(pieces) -> bytes:
    return b"".join(p.tobytes() if isinstance(p, np.ndarray) else bytes(p) for p in pieces)


def _filesystem_takes_o_direct(directory) -> bool:
    """Independently of the writer: can this filesystem open and write a block with O_DIRECT?"""
    if not hasattr(os, "O_DIRECT"):
        return False
    probe = directory / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    try:
        os.write(fd, mmap.mmap(-1, BLOCK))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def test_every_byte_lands_in_order_direct_or_not(tmp_path):
    pieces = _pieces(np.random.default_rng(0))
    for direct in (True, False):
        path = tmp_path / f"out_{direct}"
        with SequentialWriter(path, direct=direct) as f:
            for piece in pieces:
                f.write(piece)
            stayed_direct = f.direct
        assert path.read_bytes() == _expected(pieces)
        if not direct:
            assert not stayed_direct
    # where the filesystem takes O_DIRECT the writer keeps it throughout (the tail goes on close)
    path = tmp_path / "aligned"
    with SequentialWriter(path) as f:
        for piece in pieces:
            f.write(piece)
        assert f.direct == _filesystem_takes_o_direct(tmp_path)


def test_falls_back_where_open_refuses_o_direct(tmp_path, monkeypatch):
    real_open = os.open

    def refusing_open(path, flags, *args):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(uncached_io.os, "open", refusing_open)
    pieces = _pieces(np.random.default_rng(1))
    with SequentialWriter(tmp_path / "x") as f:
        assert not f.direct
        for piece in pieces:
            f.write(piece)
    assert (tmp_path / "x").read_bytes() == _expected(pieces)


def test_falls_back_where_the_filesystem_refuses_the_io(tmp_path, monkeypatch):
    """Some filesystems take O_DIRECT at open and refuse the write (EINVAL): nothing is lost or doubled."""
    if not _filesystem_takes_o_direct(tmp_path):
        pytest.skip(f"{tmp_path}: this filesystem refuses O_DIRECT, so the writer never tries it")
    real_write, refused = os.write, []

    def refusing_write(fd, data):
        import fcntl

        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT and len(refused) < 1:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(uncached_io.os, "write", refusing_write)
    pieces = _pieces(np.random.default_rng(2))
    with SequentialWriter(tmp_path / "x") as f:
        for piece in pieces:
            f.write(piece)
        assert not f.direct
    assert refused and (tmp_path / "x").read_bytes() == _expected(pieces)


def test_a_failing_writer_does_not_write_what_it_staged(tmp_path):
    path = tmp_path / "x"
    with pytest.raises(RuntimeError):
        with SequentialWriter(path) as f:
            f.write(b"staged bytes")
            direct = f.direct
            raise RuntimeError("the producer failed")
    # direct: the bytes were only staged and are dropped; buffered: they were already written
    assert path.read_bytes() == (b"" if direct else b"staged bytes")
    assert f._fd == -1  # closed either way


def test_non_contiguous_arrays_are_refused(tmp_path):
    with SequentialWriter(tmp_path / "x") as f, pytest.raises(ValueError, match="C-contiguous"):
        f.write(np.zeros((4, 4), np.float32).T)
