"""The conversion's streaming pieces: blocked transposes, aligned buffers, the prefetching
lazy leaves and the threaded safetensors writer (compared with numpy and safetensors)."""
import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open

from synthflaw_jax import hf_weights
from synthflaw_jax.errors import SynthflawError


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float16, np.float32, np.float64, np.int8])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (16, 16), (37, 70), (130, 17)])
def test_transpose_is_numpys_bit_for_bit(dtype, shape):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    w = raw.view(dtype).reshape(shape)  # every bit pattern, NaNs included
    got = hf_weights.transpose(w)
    assert got.flags.c_contiguous and got.dtype == w.dtype and got.shape == shape[::-1]
    assert got.tobytes() == np.ascontiguousarray(w.T).tobytes()
    out = np.full(shape[::-1], 7, dtype)
    assert hf_weights.transpose(w, out=out) is out and out.tobytes() == got.tobytes()


def test_transpose_into_a_strided_slot():
    """Transposing straight into one layer of a stacked parameter (its reshaped slice)."""
    w = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)
    stacked = np.zeros((3, 8, 2, 3), np.float32)
    hf_weights.transpose(w, out=stacked[1].reshape(8, 6))
    assert np.array_equal(stacked[1], w.T.reshape(8, 2, 3)) and not stacked[0].any() and not stacked[2].any()


def test_aligned_empty():
    for shape, dtype in (((3, 5), np.float32), ((1000,), ml_dtypes.bfloat16), ((7, 1, 3), np.float16)):
        a = hf_weights.aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.ctypes.data % 64 == 0
    assert hf_weights.aligned_empty((0, 4), np.float32).shape == (0, 4)


def test_lazy_params_prefetch_in_order_and_out_of_order():
    calls = []

    def load(path):
        calls.append(path)
        return np.full(3, len(calls))

    order = [("a",), ("b",), ("c",)]
    lazy = hf_weights.LazyParams(load, {"a": None, "b": None, "c": None}, order)
    assert lazy.leaf(("a",))[0] == 1
    b = lazy.leaf(("b",))  # prefetched while "a" was in use
    assert lazy.leaf(("b",)) is b and calls[:2] == [("a",), ("b",)]
    assert lazy.leaf(("a",)) is not None  # out of order: the stray prefetch of "c" finishes first
    assert calls == [("a",), ("b",), ("c",), ("a",)]
    lazy.close()


def test_lazy_params_error_surfaces_on_use():
    def load(path):
        if path == ("b",):
            raise SynthflawError("b is damaged")
        return np.zeros(2)

    lazy = hf_weights.LazyParams(load, {}, [("a",), ("b",)])
    lazy.leaf(("a",))
    with pytest.raises(SynthflawError, match="b is damaged"):
        lazy.leaf(("b",))
    lazy.close()


def test_threaded_writer_matches_safetensors_and_reports_a_bad_tensor(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {f"t{i}": rng.standard_normal((i + 1, 3)).astype(np.float32) for i in range(5)}
    entries = [(n, (lambda out=None, a=a: a), a.shape, a.dtype) for n, a in tensors.items()]

    class Bar:
        def update(self, n):
            pass

    hf_weights._write_one_file(tmp_path / "x.safetensors", entries, Bar())
    with safe_open(str(tmp_path / "x.safetensors"), framework="numpy") as f:
        for n, a in tensors.items():
            assert np.array_equal(f.get_tensor(n), a)
    raw = (tmp_path / "x.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert (8 + header_len) % 4096 == 0 and raw[8:8 + header_len].endswith(b" ")  # data starts block-aligned
    assert len(raw) == 8 + header_len + sum(a.nbytes for a in tensors.values())
    bad = entries[:2] + [("t2", lambda out=None: np.zeros((9, 9), np.float32), (3, 3), np.dtype(np.float32))]
    with pytest.raises(SynthflawError, match="t2"):
        hf_weights._write_one_file(tmp_path / "y.safetensors", bad, Bar())
