"""Random-access record sources (grain's `RandomAccessDataSource` protocol: len + getitem).

* `JsonlSource`: local JSON Lines from one file, a glob, or a directory (its `*.jsonl` and
  `*.json` files, sorted). Lines are indexed once (byte offsets) and read on demand.
* `TfdsSource`: a prepared TFDS dataset (array_record) read through `tfds.data_source`-style
  random access; no TensorFlow.
* `ListSource`: records in memory (the generated sample corpora).

Every record is a dict with an extra `_origin` key ("path:line") for error messages. A bad
line or a record that fails `validate` raises SynthflawError naming file and line, unless
`skip_bad_records`, in which case it is left out and counted in `bad_records`.
"""
from __future__ import annotations

import glob as glob_lib
import json
import os
import pathlib
from typing import Callable, Iterable

import numpy as np

from synthflaw_jax.errors import SynthflawError

Validator = Callable[[dict], "str | None"]
JSONL_SUFFIXES = (".jsonl", ".json")


def resolve_files(spec: str) -> list[pathlib.Path]:
    """The files a JSONL source names: a file, a directory (its *.jsonl/*.json) or a glob,
    local or in a bucket (gs://..., downloaded first)."""
    if not spec:
        raise SynthflawError("data source: empty path")
    from synthflaw_jax import runtime

    spec = runtime.local_input(spec, "data source")
    path = pathlib.Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in JSONL_SUFFIXES)
        if not files:
            raise SynthflawError(f"{path}: directory has no *.jsonl or *.json files")
        return files
    if glob_lib.has_magic(spec):
        files = sorted(pathlib.Path(p) for p in glob_lib.glob(os.path.expanduser(spec), recursive=True))
        files = [p for p in files if p.is_file()]
        if not files:
            raise SynthflawError(f"{spec}: glob matches no files")
        return files
    raise SynthflawError(f"{path}: no such file or directory")


class _Source:
    """Shared bookkeeping: bad-record count and the first few reasons."""

    name: str
    bad_records: int = 0
    bad_examples: list[str]

    def _bad(self, where: str, why: str, skip: bool) -> None:
        if not skip:
            raise SynthflawError(f"{where}: {why}")
        self.bad_records += 1
        if len(self.bad_examples) < 5:
            self.bad_examples.append(f"{where}: {why}")

    def _check_nonempty(self) -> None:
        if len(self) == 0:
            extra = f" ({self.bad_records} bad records skipped)" if self.bad_records else ""
            raise SynthflawError(f"{self.name}: data source has no records{extra}")


class JsonlSource(_Source):
    """Local JSON Lines, indexed by byte offset; blank lines are not records and are ignored."""

    def __init__(self, spec: str, *, validate: Validator | None = None, skip_bad_records: bool = False):
        from synthflaw_jax import runtime

        self.name = spec
        self.files = resolve_files(spec)
        self.names = [runtime.source_name(p) for p in self.files]  # a bucket file: its gs:// path
        self.bad_records = 0
        self.bad_examples = []
        file_idx, starts, lengths, lines = [], [], [], []
        for fi, path in enumerate(self.files):
            try:
                with open(path, "rb") as f:
                    offset = 0
                    for lineno, raw in enumerate(f, 1):
                        start, offset = offset, offset + len(raw)
                        if not raw.strip():
                            continue
                        why = self._check_line(raw, validate)
                        if why:
                            self._bad(f"{self.names[fi]}:{lineno}", why, skip_bad_records)
                            continue
                        file_idx.append(fi)
                        starts.append(start)
                        lengths.append(len(raw))
                        lines.append(lineno)
            except OSError as err:
                raise SynthflawError(f"{self.names[fi]}: cannot read: {err.strerror or err}")
        self._file_idx = np.asarray(file_idx, np.int32)
        self._starts = np.asarray(starts, np.int64)
        self._lengths = np.asarray(lengths, np.int64)
        self._lines = np.asarray(lines, np.int64)
        self._fds: dict[int, int] = {}
        self._check_nonempty()

    @staticmethod
    def _check_line(raw: bytes, validate: Validator | None) -> str | None:
        try:
            record = json.loads(raw)
        except UnicodeDecodeError as err:
            return f"not UTF-8 ({err.reason})"
        except json.JSONDecodeError as err:
            return f"invalid JSON: {err.msg} (column {err.colno})"
        if not isinstance(record, dict):
            return f"line is a JSON {type(record).__name__}, not an object"
        return validate(record) if validate else None

    def __len__(self) -> int:
        return len(self._starts)

    def origin(self, index: int) -> str:
        """"path:line" of record `index`."""
        return f"{self.names[self._file_idx[index]]}:{self._lines[index]}"

    def __getitem__(self, index: int) -> dict:
        fi = int(self._file_idx[index])
        fd = self._fds.get(fi)
        if fd is None:
            fd = self._fds[fi] = os.open(self.files[fi], os.O_RDONLY)
        raw = os.pread(fd, int(self._lengths[index]), int(self._starts[index]))
        record = json.loads(raw)
        record["_origin"] = self.origin(index)
        return record

    def __getstate__(self):  # file descriptors do not travel to worker processes
        state = dict(self.__dict__)
        state["_fds"] = {}
        return state

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass


class ListSource(_Source):
    """Records held in memory, validated like the file sources."""

    def __init__(self, name: str, records: Iterable[dict], *, validate: Validator | None = None,
                 skip_bad_records: bool = False):
        self.name = name
        self.bad_records = 0
        self.bad_examples = []
        self._records = []
        for i, record in enumerate(records):
            why = (None if isinstance(record, dict) else "record is not an object") or (validate(record) if validate else None)
            if why:
                self._bad(f"{name}#{i}", why, skip_bad_records)
                continue
            self._records.append(({**record, "_origin": f"{name}#{i}"}))
        self._check_nonempty()

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        return dict(self._records[index])


class TfdsSource(_Source):
    """A prepared TFDS dataset, random access through array_record (TensorFlow not needed).

    `spec` is a prepared dataset directory (the one with dataset_info.json, e.g. written by
    `tfds_builder.build_tfds`) or a registered dataset name found under `data_dir`. Records
    written by our builder are JSON text in the `json` feature; any other dataset's examples
    are used as they come, with bytes decoded as UTF-8.
    """

    def __init__(self, spec: str, *, split: str = "train", data_dir: str | None = None,
                 validate: Validator | None = None, skip_bad_records: bool = False):
        import tensorflow_datasets as tfds

        from synthflaw_jax import runtime

        self.name = f"tfds:{spec}[{split}]"
        self.bad_records = 0
        self.bad_examples = []
        # bucket paths are downloaded first (array_record reads local files): a dataset
        # directory whole, or from a bucket data_dir only the named dataset's directory
        spec = runtime.local_input(spec, "data source")
        if data_dir and runtime.is_remote(data_dir):
            name = str(spec).split(":", 1)[0].split("/", 1)[0]
            data_dir = str(pathlib.Path(runtime.local_input(f"{str(data_dir).rstrip('/')}/{name}", "data_dir")).parent)
        try:
            path = pathlib.Path(spec).expanduser()
            if (path / "dataset_info.json").is_file():
                self._ds = tfds.builder_from_directory(str(path)).as_data_source(split=split)
            else:
                self._ds = tfds.data_source(spec, split=split, data_dir=data_dir, download=False)
        except Exception as err:  # tfds raises its own types for unknown datasets/splits
            raise SynthflawError(f"{self.name}: cannot open TFDS dataset: {type(err).__name__}: {str(err).splitlines()[0]}")
        keep = []
        for i in range(len(self._ds)):
            try:
                record = self._decode(self._ds[i])
                why = validate(record) if validate else None
            except SynthflawError as err:
                why = str(err)
            if why:
                self._bad(f"{self.name}#{i}", why, skip_bad_records)
                continue
            keep.append(i)
        self._keep = np.asarray(keep, np.int64)
        self._check_nonempty()

    @staticmethod
    def _decode(example: dict) -> dict:
        if set(example) >= {"json"} and isinstance(example["json"], (bytes, str)):
            try:
                record = json.loads(example["json"])
            except json.JSONDecodeError as err:
                raise SynthflawError(f"invalid JSON in the 'json' feature: {err.msg}")
            if not isinstance(record, dict):
                raise SynthflawError("the 'json' feature is not a JSON object")
            origin = example.get("origin", b"")
            record["_source_origin"] = origin.decode("utf-8") if isinstance(origin, bytes) else str(origin)
            return record
        return {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in example.items()}

    def __len__(self) -> int:
        return len(self._keep)

    def __getitem__(self, index: int) -> dict:
        i = int(self._keep[index])
        record = self._decode(self._ds[i])
        record["_origin"] = f"{self.name}#{i}" + (f" ({record['_source_origin']})" if record.get("_source_origin") else "")
        return record


def open_source(spec: str, source_type: str = "jsonl", *, split: str = "train", data_dir: str | None = None,
                validate: Validator | None = None, skip_bad_records: bool = False) -> _Source:
    """A source from the config's (`source`, `source_type`): jsonl, tfds or sample."""
    if source_type == "jsonl":
        return JsonlSource(spec, validate=validate, skip_bad_records=skip_bad_records)
    if source_type == "tfds":
        return TfdsSource(spec, split=split, data_dir=data_dir or None, validate=validate, skip_bad_records=skip_bad_records)
    if source_type == "sample":
        from synthflaw_jax.data import sample_data

        if spec == "synthetic_qa":
            records = sample_data.synthetic_qa_records()
        elif spec == "stdlib_text":
            records = [{"text": d} for d in sample_data.stdlib_docstrings()]
        else:
            raise SynthflawError(f"config: sample source {spec!r} is not synthetic_qa or stdlib_text")
        return ListSource(f"sample:{spec}", records, validate=validate, skip_bad_records=skip_bad_records)
    raise SynthflawError(f"config: source_type {source_type!r} is not jsonl, tfds or sample")
