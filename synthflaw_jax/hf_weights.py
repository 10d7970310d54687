"""Hugging Face weight files: the name/layout mapping to our params, streaming reads, sharded writes.

Reading parses the `*.safetensors` headers, then reads one tensor at a time with a plain file
read into a reused buffer and transposes it straight into its place in the stacked
`[layers, ...]` parameter (two threads share a parameter's layers), so peak host memory stays
near one parameter plus what has been placed. Writing plans each file's header from the shapes,
then streams one tensor at a time through a writer thread, past the page cache where the
filesystem allows (`uncached_io`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import ml_dtypes
import numpy as np
from safetensors import safe_open

from synthflaw_jax import uncached_io
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models.config import ModelConfig

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")
_IGNORED_HF_TENSORS = ("rotary_emb.inv_freq",)

DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


@dataclasses.dataclass(frozen=True)
class TensorMap:
    """One HF tensor (per layer when `layered`) and where it lives in our params.

    `transposed`: our layout is the HF matrix transposed and then reshaped (no other change),
    which lets the readers and writers transpose straight into their destination buffers."""

    hf_name: str  # with "{i}" for the layer index when layered
    path: tuple[str, ...]  # keys into our params pytree
    hf_shape: tuple[int, ...]
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    layered: bool = False
    shape: tuple[int, ...] = ()  # our per-layer shape
    transposed: bool = False


def _identity(x):
    return x


_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_READ_WORKERS = 2  # threads reading and transposing the layers of one parameter
_TRANSPOSE_ROWS = 16  # source rows per block (measured: 16 rows 1.4 ns/element for bf16, 64 rows 3.7, plain .T 15)


def transpose(w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """`w.T` of a 2-D array as a C-contiguous array (`out` when given), the same bits.

    Copied in row blocks through an unsigned-integer view of the same width: numpy copies
    ml_dtypes' bfloat16 one element at a time through the dtype's generic path, and a whole
    strided transpose misses the cache on every element; together ~4x slower on a 1B model."""
    if out is None:
        out = np.empty(w.shape[::-1], w.dtype)
    if w.ndim != 2 or w.dtype.itemsize not in _UINT or out.dtype != w.dtype:
        out[...] = w.T
        return out
    src, dst = w.view(_UINT[w.dtype.itemsize]), out.view(_UINT[w.dtype.itemsize])
    for r in range(0, w.shape[0], _TRANSPOSE_ROWS):
        dst[:, r:r + _TRANSPOSE_ROWS] = src[r:r + _TRANSPOSE_ROWS].T
    return out


def aligned_empty(shape: tuple[int, ...], dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an `align`-byte boundary:
    `jax.device_put` on CPU aliases such a buffer instead of copying it."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def tensor_maps(cfg: ModelConfig) -> list[TensorMap]:
    """Every tensor of the HF checkpoint for this config, with its transform to our layout."""
    d, f, h, kv, hd, v = (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
                          cfg.num_key_value_heads, cfg.head_dim, cfg.vocab_size)
    maps = [TensorMap("model.embed_tokens.weight", ("embed_tokens", "embedding"), (v, d), _identity, _identity,
                      shape=(v, d))]

    def t_map(name, path, hf_shape, ours, layered=True):
        """Ours = the HF matrix transposed, then reshaped to `ours`."""
        rows, cols = hf_shape
        maps.append(TensorMap(name, path, hf_shape, lambda w: transpose(w).reshape(ours),
                              lambda k: transpose(k.reshape(cols, rows)), layered, ours, True))

    def layer(name, path, shape, to_ours, to_hf, ours):
        maps.append(TensorMap(f"model.layers.{{i}}.{name}", ("layers",) + path, shape, to_ours, to_hf, True, ours))

    for norm in ("input_layernorm", "post_attention_layernorm"):
        layer(f"{norm}.weight", (norm, "scale"), (d,), _identity, _identity, (d,))
    qkv_bias = cfg.attention_bias or cfg.qkv_bias
    for proj, heads in (("q_proj", h), ("k_proj", kv), ("v_proj", kv)):
        t_map(f"model.layers.{{i}}.self_attn.{proj}.weight", ("layers", "self_attn", proj, "kernel"),
              (heads * hd, d), (d, heads, hd))
        if qkv_bias:
            layer(f"self_attn.{proj}.bias", ("self_attn", proj, "bias"), (heads * hd,),
                  lambda b, n=heads: b.reshape(n, hd), lambda b, n=heads: b.reshape(n * hd), (heads, hd))
    t_map("model.layers.{i}.self_attn.o_proj.weight", ("layers", "self_attn", "o_proj", "kernel"),
          (d, h * hd), (h, hd, d))
    if cfg.attention_bias:
        layer("self_attn.o_proj.bias", ("self_attn", "o_proj", "bias"), (d,), _identity, _identity, (d,))
    for proj, shape in (("gate_proj", (f, d)), ("up_proj", (f, d)), ("down_proj", (d, f))):
        t_map(f"model.layers.{{i}}.mlp.{proj}.weight", ("layers", "mlp", proj, "kernel"), shape, shape[::-1])
        if cfg.mlp_bias:
            layer(f"mlp.{proj}.bias", ("mlp", proj, "bias"), (shape[0],), _identity, _identity, (shape[0],))
    maps.append(TensorMap("model.norm.weight", ("norm", "scale"), (d,), _identity, _identity, shape=(d,)))
    if not cfg.tie_word_embeddings:
        t_map("lm_head.weight", ("lm_head", "kernel"), (v, d), (d, v), layered=False)
    return maps


def _hf_names(m: TensorMap, num_layers: int) -> list[str]:
    return [m.hf_name.format(i=i) for i in range(num_layers)] if m.layered else [m.hf_name]


class SafetensorsReader:
    """Lazy access to the tensors of an HF directory (single file or sharded with an index)."""

    def __init__(self, hf_dir: str | pathlib.Path):
        self.dir = pathlib.Path(hf_dir)
        self._handles: dict[pathlib.Path, object] = {}
        self._headers: dict[pathlib.Path, tuple[int, dict]] = {}
        self.location = self._index()

    def _index(self) -> dict[str, pathlib.Path]:
        index_path = self.dir / INDEX_FILE
        if index_path.is_file():
            try:
                weight_map = json.loads(index_path.read_text())["weight_map"]
                assert isinstance(weight_map, dict)
            except (json.JSONDecodeError, KeyError, TypeError, AssertionError, UnicodeDecodeError):
                raise SynthflawError(f"{index_path}: malformed index (expected a 'weight_map' object)") from None
            location = {name: self.dir / fname for name, fname in weight_map.items()}
            for path in sorted(set(location.values())):
                if not path.is_file():
                    raise SynthflawError(f"{index_path}: lists {path.name}, which does not exist")
            return location
        files = sorted(self.dir.glob("*.safetensors"))
        if not files:
            pickles = [p for p in PICKLE_WEIGHTS if (self.dir / p).exists()]
            if pickles:
                raise SynthflawError(
                    f"{self.dir / pickles[0]}: pickle weights are refused (unpickling runs code); "
                    "convert them to safetensors first"
                )
            raise SynthflawError(f"{self.dir}: no *.safetensors weights found")
        location = {}
        for path in files:
            for name in self._open(path).keys():
                location[name] = path
        return location

    def _open(self, path: pathlib.Path):
        if path not in self._handles:
            try:
                self._handles[path] = safe_open(str(path), framework="numpy")
            except Exception as err:  # safetensors raises its own error types
                raise SynthflawError(f"{path}: corrupt or truncated safetensors file ({_one_line(err)})") from None
        return self._handles[path]

    def names(self) -> list[str]:
        """All tensor names in the checkpoint."""
        return list(self.location)

    def get(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """One tensor as a numpy array (its stored dtype kept), read with a plain file read:
        memory-mapped pages would stay resident and count twice against host memory.
        `out`: a C-contiguous buffer of the tensor's shape and dtype to read into (a scratch
        buffer reused across layers never page-faults again); otherwise a 64-byte-aligned one."""
        path = self._file_of(name)
        offset, dtype, shape = self._entry(path, name)
        if out is None or out.shape != shape or out.dtype != dtype:
            out = aligned_empty(shape, dtype)
        with open(path, "rb", buffering=0) as f:
            f.seek(offset)
            got = f.readinto(memoryview(out.reshape(-1).view(np.uint8)))
        if got != out.nbytes:
            raise SynthflawError(f"{path}: cannot read tensor {name!r}, file truncated")
        return out

    def stored_dtype(self, name: str) -> np.dtype:
        """The dtype one tensor is stored in, from the file's header."""
        return self._entry(self._file_of(name), name)[1]

    def _file_of(self, name: str) -> pathlib.Path:
        if name not in self.location:
            raise SynthflawError(f"{self.dir}: tensor {name!r} is missing from the checkpoint")
        return self.location[name]

    def _entry(self, path: pathlib.Path, name: str) -> tuple[int, np.dtype, tuple[int, ...]]:
        """(absolute data offset, dtype, shape) of one tensor, from the file's header."""
        if path not in self._headers:
            with open(path, "rb") as f:
                header_len = int.from_bytes(f.read(8), "little")
                self._headers[path] = (8 + header_len, json.loads(f.read(header_len)))
        start, header = self._headers[path]
        entry = header[name]
        if entry["dtype"] not in _FROM_SAFETENSORS:
            raise SynthflawError(f"{path}: tensor {name!r} has unsupported dtype {entry['dtype']}")
        return start + entry["data_offsets"][0], _FROM_SAFETENSORS[entry["dtype"]], tuple(entry["shape"])

    def shape(self, name: str) -> tuple[int, ...]:
        """Stored shape of one tensor, read from the header only."""
        path = self.location[name]
        try:
            return tuple(self._open(path).get_slice(name).get_shape())
        except SynthflawError:
            raise
        except Exception as err:
            raise SynthflawError(f"{path}: corrupt header for tensor {name!r} ({_one_line(err)})") from None

    def check_file_sizes(self) -> None:
        """Refuse files whose data section is shorter than their header says (truncated)."""
        for path in sorted(set(self.location.values())):
            raw = path.open("rb")
            try:
                header_len = int.from_bytes(raw.read(8), "little")
                header = json.loads(raw.read(header_len))
            except (json.JSONDecodeError, UnicodeDecodeError, ValueError, MemoryError):
                raise SynthflawError(f"{path}: corrupt safetensors header") from None
            finally:
                raw.close()
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            size = path.stat().st_size
            if size < 8 + header_len + end:
                raise SynthflawError(
                    f"{path}: truncated safetensors file ({size} bytes, header needs {8 + header_len + end})"
                )


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:200]


def check_against_config(reader: SafetensorsReader, cfg: ModelConfig, source: str) -> None:
    """Every tensor the config needs is present with the right shape; nothing unexpected."""
    expected = {}
    for m in tensor_maps(cfg):
        for name in _hf_names(m, cfg.num_hidden_layers):
            expected[name] = m.hf_shape
    for name, shape in expected.items():
        if name not in reader.location:
            raise SynthflawError(f"{source}: tensor {name!r} required by config.json is missing")
        got = reader.shape(name)
        if got != shape:
            raise SynthflawError(
                f"{reader.location[name]}: tensor {name!r} has shape {list(got)}, config.json implies {list(shape)}"
            )
    for name in reader.names():
        if name in expected or name.endswith(_IGNORED_HF_TENSORS):
            continue
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        raise SynthflawError(f"{reader.location[name]}: unexpected tensor {name!r} for {cfg.architecture}")


def iter_params(reader: SafetensorsReader, cfg: ModelConfig, place: Callable, dtype: str | None = None,
                progress: bool = True) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, parameter) for every parameter of our pytree, built one HF tensor at a time;
    `place(path, array)` puts each finished parameter where it belongs (device, sharding)."""
    from tqdm.auto import tqdm

    maps = tensor_maps(cfg)
    total = sum(cfg.num_hidden_layers if m.layered else 1 for m in maps)
    cast = DTYPES[dtype] if dtype else None
    reads_into = isinstance(reader, SafetensorsReader)
    scratch = threading.local()  # each worker's read buffer, reused across the layers it takes

    def read_transposed(stacked, m, i, name):
        """Read one HF tensor into the worker's buffer and transpose it into its place."""
        scratch.buf = reader.get(name, out=getattr(scratch, "buf", None))
        transpose(scratch.buf, out=(stacked[i] if m.layered else stacked).reshape(scratch.buf.shape[::-1]))

    with tqdm(total=total, desc="reading tensors", unit="tensor", disable=not progress) as bar, \
            ThreadPoolExecutor(_READ_WORKERS, thread_name_prefix="read-tensors") as workers:
        for m in maps:
            names = _hf_names(m, cfg.num_hidden_layers)
            if reads_into and m.transposed and cast is None:
                # layers in parallel: most of the time is the kernel clearing the new parameter's
                # pages as the transposes first touch them, which one thread cannot overlap
                stored_dtype = reader.stored_dtype(names[0])
                stacked = aligned_empty(((cfg.num_hidden_layers,) if m.layered else ()) + m.shape, stored_dtype)
                for _ in workers.map(lambda i, name: read_transposed(stacked, m, i, name), range(len(names)), names):
                    bar.update(1)
            else:
                stacked = None
                for i, name in enumerate(names):
                    ours = m.to_ours(reader.get(name))
                    if cast is not None:
                        ours = ours.astype(cast)
                    if not m.layered:
                        stacked = ours if ours.flags.c_contiguous and ours.ctypes.data % 64 == 0 else \
                            _aligned_copy(ours)
                    else:
                        if stacked is None:
                            stacked = aligned_empty((cfg.num_hidden_layers,) + ours.shape, ours.dtype)
                        stacked[i] = ours
                    del ours
                    bar.update(1)
            placed = place(m.path, stacked)
            del stacked
            yield m.path, placed


def _aligned_copy(x: np.ndarray) -> np.ndarray:
    out = aligned_empty(x.shape, x.dtype)
    out[...] = x
    return out


def read_params(reader: SafetensorsReader, cfg: ModelConfig, place: Callable, dtype: str | None = None,
                progress: bool = True):
    """Our whole params pytree (see `iter_params`)."""
    params: dict = {}
    for path, value in iter_params(reader, cfg, place, dtype, progress):
        _set(params, path, value)
    return params


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


class LazyParams:
    """Params fetched one leaf at a time by `load(path)`, keeping only the newest leaf, with
    `dtypes` (a pytree of numpy dtypes) known up front: lets a writer stream a checkpoint.

    With `order` (the paths in the order they will be asked for), the next leaf is loaded in a
    background thread while the current one is used: at most two leaves are in memory."""

    def __init__(self, load: Callable[[tuple[str, ...]], np.ndarray], dtypes, order=()):
        self._load, self.dtypes = load, dtypes
        self._cached: tuple[tuple[str, ...], np.ndarray] | None = None
        self._order = [tuple(p) for p in order]
        self._next = None  # (path, future) of the leaf being prefetched
        self._pool = None

    def leaf(self, path: tuple[str, ...]) -> np.ndarray:
        """The leaf at `path` (the previous one is dropped)."""
        if self._cached is None or self._cached[0] != path:
            self._cached = None
            ahead, self._next = self._next, None
            if ahead is not None and ahead[0] == path:
                value = ahead[1].result()
            else:
                if ahead is not None:  # asked out of order: let the stray load finish first
                    ahead[1].exception()
                value = self._load(path)
            del ahead
            self._cached = (path, value)
            self._prefetch_after(path)
        return self._cached[1]

    def _prefetch_after(self, path: tuple[str, ...]) -> None:
        if path not in self._order:
            return
        k = self._order.index(path) + 1
        if k < len(self._order):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
            self._next = (self._order[k], self._pool.submit(self._load, self._order[k]))

    def close(self) -> None:
        """Wait for a prefetch in flight and drop the cached leaves."""
        if self._next is not None:
            self._next[1].exception()
        self._next = self._cached = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def iter_hf_tensors(params, cfg: ModelConfig, dtype: str | None = None) -> Iterator[tuple[str, Callable[..., np.ndarray], tuple, np.dtype]]:
    """(hf_name, thunk producing the numpy tensor, shape, dtype) for every HF tensor, in HF order.

    `params` is a pytree or `LazyParams`. Thunks gather one layer's slice at a time, so a
    sharded jax array is never copied whole; on a multi-host job every process must run the
    thunks in this order (the writer via `write_safetensors`, the others via `gather_only`).
    `thunk(out)` may fill and return `out`, a C-contiguous buffer of the tensor's shape and
    dtype (a transposed tensor is written into it instead of a fresh array)."""
    cast = np.dtype(DTYPES[dtype]) if dtype else None
    lazy = isinstance(params, LazyParams)
    for m in tensor_maps(cfg):
        stored = _get(params.dtypes, m.path) if lazy else _get(params, m.path).dtype
        out_dtype = cast or np.dtype(stored)
        for i, name in enumerate(_hf_names(m, cfg.num_hidden_layers)):
            def thunk(out=None, i=i, m=m):
                leaf = params.leaf(m.path) if lazy else _get(params, m.path)
                arr = _to_host(leaf[i] if m.layered else leaf)
                if m.transposed and out is not None and arr.dtype == out_dtype:
                    return transpose(arr.reshape(m.hf_shape[::-1]), out=out)
                arr = np.ascontiguousarray(m.to_hf(arr))
                return arr.astype(out_dtype) if arr.dtype != out_dtype else arr
            yield name, thunk, m.hf_shape, out_dtype


def _to_host(x) -> np.ndarray:
    """numpy copy of one slice; a slice spread over several hosts is gathered (a collective:
    every process takes part, see `gather_only`)."""
    from synthflaw_jax.runtime import to_host

    return to_host(x)


def gather_only(params, cfg: ModelConfig, dtype: str | None = None) -> None:
    """On a multi-host job, what every host but the writer does while process 0 runs
    `write_safetensors`: the same gathers in the same order, results dropped."""
    for _, thunk, _, _ in iter_hf_tensors(params, cfg, dtype):
        thunk()


_SAFETENSORS_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64",
                       "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


_FROM_SAFETENSORS = {"F32": np.dtype(np.float32), "BF16": np.dtype(ml_dtypes.bfloat16), "F16": np.dtype(np.float16),
                     "F64": np.dtype(np.float64)}


def _write_one_file(path: pathlib.Path, entries: list, bar) -> int:
    """Stream tensors into one safetensors file: the header is planned from shapes, then each
    tensor is materialised and handed to a writer thread, so the next one is restored and
    transposed while the disk takes the last (at most two tensors in memory). The file is
    written past the page cache where the filesystem allows (`uncached_io`)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, _, shape, dtype in entries:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype.name], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # the format allows trailing spaces in the header; padding it to a whole number of blocks
    # starts the data block-aligned, so aligned tensors go to the disk without a staging copy
    raw += b" " * (-(8 + len(raw)) % uncached_io.BLOCK)
    with uncached_io.SequentialWriter(path) as f, ThreadPoolExecutor(1, thread_name_prefix="safetensors") as pool:
        f.write(len(raw).to_bytes(8, "little") + raw)
        pending = None
        # two buffers per tensor shape, used in turn: the one the writer thread holds and the
        # one being filled (fresh arrays would be page-faulted and zeroed for every tensor)
        buffers: dict = {}
        try:
            for name, thunk, shape, dtype in entries:
                ring = buffers.setdefault((tuple(shape), dtype), [])
                if len(ring) < 2:
                    ring.append(aligned_empty(tuple(shape), dtype, align=uncached_io.BLOCK))
                ring.reverse()
                array = thunk(ring[0])
                if tuple(array.shape) != tuple(shape) or array.dtype != dtype:
                    raise SynthflawError(f"{path}: tensor {name!r} came out {array.dtype}{list(array.shape)}, "
                                         f"planned {dtype}{list(shape)}")
                if pending is not None:
                    pending.result()
                pending = pool.submit(f.write, np.ascontiguousarray(array))
                del array
                bar.update(1)
            if pending is not None:
                pending, done = None, pending
                done.result()
        finally:
            if pending is not None:  # failing: the write in flight ends before the file is closed
                pending.exception()
    return offset


def write_safetensors(params, cfg: ModelConfig, out_dir: pathlib.Path, max_shard_bytes: int = 5 * 2**30,
                      dtype: str | None = None, progress: bool = True) -> list[str]:
    """Write `model.safetensors` (or `model-0000k-of-0000n.safetensors` + index above the shard
    limit) into out_dir, one tensor in memory at a time; returns the file names written."""
    from tqdm.auto import tqdm

    entries = list(iter_hf_tensors(params, cfg, dtype))
    shards: list[list] = [[]]
    shard_bytes = 0
    for entry in entries:
        nbytes = int(np.prod(entry[2])) * entry[3].itemsize
        if shards[-1] and shard_bytes + nbytes > max_shard_bytes:
            shards.append([])
            shard_bytes = 0
        shards[-1].append(entry)
        shard_bytes += nbytes
    n = len(shards)
    names = ["model.safetensors"] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    weight_map, total_size = {}, 0
    try:
        with tqdm(total=len(entries), desc="writing tensors", unit="tensor", disable=not progress) as bar:
            for fname, shard in zip(names, shards):
                total_size += _write_one_file(out_dir / fname, shard, bar)
                weight_map.update({entry[0]: fname for entry in shard})
    finally:
        if isinstance(params, LazyParams):
            params.close()
    if n > 1:
        index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
        (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
        names.append(INDEX_FILE)
    return names
