"""Streams of fixed-shape batches and their forget/replay(/retain) mixture, resumable exactly.

One stream: a record source -> grain `MapDataset` (`shuffle(seed)` reseeded every epoch,
`repeat`, then this host's share `[process_index::process_count]`) -> tokenized examples
(formats.py) -> truncation policy -> batches (packing.py). Its state is where it stands in
that index space plus counters: a few ints. A batch only depends on that index (the packer
closes a batch at the first example that does not fit, and that example opens the next),
so restoring the state reproduces the following batches exactly.

The mixture yields {stream name: batch} with each stream's rows from the config
(`stream_batch_sizes`, global over hosts, divided by process_count here).
"""
from __future__ import annotations

import logging
from typing import Any

import grain
import numpy as np

from synthflaw_jax.data import config as config_lib
from synthflaw_jax.data import formats
from synthflaw_jax.data import packing as packing_lib
from synthflaw_jax.data import tokenizer as tok_lib
from synthflaw_jax.data.sources import open_source
from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)

COUNTERS = ("examples", "truncated", "dropped_too_long", "dropped_no_target", "bad_records", "batches",
            "tokens", "target_tokens")
# Identity of the data behind a state: restoring into a different setup is an error.
_IDENTITY = ("seed", "num_records", "process_index", "process_count", "rows", "seq_len")


class StreamIterator:
    """Batches of one stream for this host; `get_state()`/`set_state()` resume exactly."""

    def __init__(self, name: str, source, formatter: formats.Formatter, *, rows: int, seq_len: int,
                 packing: bool = True, truncation: str = "truncate", shuffle: bool = True, seed: int = 0,
                 num_epochs: int | None = None, process_index: int = 0, process_count: int = 1,
                 drop_remainder: bool = False, skip_bad_records: bool = False, lookahead: int = 64,
                 pattern_marker=None, max_segments: int | None = None, split_across_rows: bool = False):
        if not 0 <= process_index < process_count:
            raise SynthflawError(f"process_index {process_index} is not in [0, {process_count})")
        if truncation not in packing_policies():
            raise SynthflawError(f"config: truncation {truncation!r} is not one of {', '.join(packing_policies())}")
        self.name, self.source, self.formatter = name, source, formatter
        self.rows, self.seq_len, self.packing, self.truncation = int(rows), int(seq_len), bool(packing), truncation
        self.seed, self.drop_remainder, self.skip_bad_records = int(seed), bool(drop_remainder), bool(skip_bad_records)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.lookahead = max(1, int(lookahead))
        self.pattern_marker = pattern_marker  # data/scope.py: adds batch["pattern_mask"] when set
        self.max_segments = None if max_segments is None else int(max_segments)
        self.split_across_rows = bool(split_across_rows) and self.packing
        if self.split_across_rows and (max_segments is not None or pattern_marker is not None):
            raise SynthflawError(f"config: streams.{name}.split_across_rows cannot be used with this stream's "
                                 f"loss, which needs whole examples (per-example terms or a pattern scope)")
        self.pad_id = tok_lib.pad_id(formatter.tokenizer)
        self.num_records = len(source)
        ds = grain.MapDataset.source(source)
        if shuffle:
            ds = ds.shuffle(seed=self.seed)  # grain reseeds with seed + epoch: a new order every epoch
        ds = ds.repeat(num_epochs or None)
        self._ds = ds[self.process_index::self.process_count]
        self._stop = len(self._ds)
        self._position = 0
        self._offset = 0  # split_across_rows: tokens of example `_position` already placed
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._cache: dict[int, tuple[formats.Example | None, str]] = {}
        self._done = False

    # --- examples -------------------------------------------------------------------------
    def _featurize(self, records: list[dict]) -> list[tuple[formats.Example | None, str]]:
        try:
            examples: list[formats.Example | None] = list(self.formatter(records))
            outcomes = ["ok"] * len(records)
        except SynthflawError:  # find the culprit record(s) one by one
            examples, outcomes = [], []
            for record in records:
                try:
                    examples.append(self.formatter([record])[0])
                    outcomes.append("ok")
                except SynthflawError as err:
                    if not self.skip_bad_records:
                        raise SynthflawError(f"{record.get('_origin', self.name)}: {err}") from None
                    examples.append(None)
                    outcomes.append("bad_records")
        out = []
        for example, outcome in zip(examples, outcomes):
            if example is None or self.split_across_rows:  # split examples need no truncation
                out.append((example, outcome))
            else:
                out.append(packing_lib.apply_truncation(example, self.seq_len, self.truncation))
        return out

    def _get(self, index: int) -> formats.Example | None:
        if index not in self._cache:
            hi = min(index + self.lookahead, self._stop)
            records = [self._ds[i] for i in range(index, hi)]
            for i, item in zip(range(index, hi), self._featurize(records)):
                self._cache[i] = item
        example, _ = self._cache[index]
        if example is None and index - self._position > self.num_records:
            raise SynthflawError(f"stream {self.name!r}: every example is left out (truncation={self.truncation!r})")
        return example

    # --- batches --------------------------------------------------------------------------
    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._done or self._position >= self._stop:
            self._done = True
            raise StopIteration
        start = self._position
        if self.split_across_rows:
            batch, end, self._offset, _ = packing_lib.fill_rows(
                self._get, start, self._offset, self._stop, self.rows, self.seq_len, pad_id=self.pad_id)
            placed = int(batch["segment_ids"].any())
        else:
            batch, end, placed = packing_lib.fill_batch(
                self._get, start, self._stop, self.rows, self.seq_len, packing=self.packing, pad_id=self.pad_id,
                max_segments=self.max_segments,
            )
        for i in range(start, end):
            example, outcome = self._cache.pop(i)
            if outcome != "ok":
                self._counts[outcome] += 1
            if example is not None:
                self._counts["examples"] += 1
        self._position = end
        if placed == 0 or (self.drop_remainder and end >= self._stop):
            self._done = True
            raise StopIteration
        if self.pattern_marker is not None:
            batch["pattern_mask"] = self.pattern_marker.batch_mask(batch)
        self._counts["batches"] += 1
        self._counts["tokens"] += int((batch["segment_ids"] > 0).sum())
        self._counts["target_tokens"] += int(batch["loss_mask"].sum())
        return batch

    @property
    def epoch(self) -> int:
        """The epoch of the next example this host reads."""
        return (self.process_index + self.process_count * self._position) // self.num_records

    def stats(self) -> dict[str, int]:
        """Counters so far: examples placed, truncated/dropped by policy, bad records skipped, tokens."""
        return {**self._counts, "epoch": self.epoch, "source_bad_records": getattr(self.source, "bad_records", 0)}

    # --- state ----------------------------------------------------------------------------
    def get_state(self) -> dict[str, int]:
        """Where the stream stands: position (and offset into it), epoch, seed, identity of the data,
        counters (all ints)."""
        return {"position": self._position, "offset": self._offset, "epoch": self.epoch, "done": int(self._done),
                **{k: getattr(self, k) for k in _IDENTITY}, **self._counts}

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume from `get_state()`'s output (values may be numpy scalars, as restored by Orbax)."""
        for key in _IDENTITY:
            if key not in state:
                raise SynthflawError(f"data state of stream {self.name!r} has no {key!r}")
            if int(state[key]) != getattr(self, key):
                raise SynthflawError(
                    f"data state of stream {self.name!r} was saved with {key}={int(state[key])}, "
                    f"the pipeline now has {key}={getattr(self, key)}"
                )
        self._position = int(state["position"])
        self._offset = int(state.get("offset", 0))  # absent in states saved before split_across_rows
        self._done = bool(int(state.get("done", 0)))
        self._counts = {k: int(state.get(k, 0)) for k in COUNTERS}
        self._cache.clear()


def packing_policies() -> tuple[str, ...]:
    """The truncation policies the packer knows."""
    return packing_lib.TRUNCATION_POLICIES


class MixtureIterator:
    """{stream: batch} per step from several `StreamIterator`s; stops when the first stream ends."""

    def __init__(self, streams: dict[str, StreamIterator]):
        self.streams = dict(streams)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, dict[str, np.ndarray]]:
        return {name: next(stream) for name, stream in self.streams.items()}

    def get_state(self) -> dict[str, dict[str, int]]:
        """{stream: stream state}: a small pytree of ints to save with the checkpoint."""
        return {name: stream.get_state() for name, stream in self.streams.items()}

    def set_state(self, state: dict[str, dict[str, Any]]) -> None:
        """Restore every stream; the saved and configured stream names must match."""
        if set(state) != set(self.streams):
            raise SynthflawError(
                f"data state has streams {sorted(state)}, the config has {sorted(self.streams)}"
            )
        for name, stream in self.streams.items():
            stream.set_state(state[name])

    def stats(self) -> dict[str, dict[str, int]]:
        """Each stream's counters."""
        return {name: stream.stats() for name, stream in self.streams.items()}


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax

        return (jax.process_index() if process_index is None else process_index,
                jax.process_count() if process_count is None else process_count)
    return int(process_index), int(process_count)


def open_stream_source(config, name: str, spec: formats.FormatSpec | None = None):
    """The record source of stream `name`, every record checked against its format up front."""
    s = config.streams[name]
    spec = spec or config_lib.format_spec(config, name)
    return open_source(
        s.source, s.source_type, split=s.split, data_dir=s.data_dir or None,
        validate=lambda record: formats.validate(record, spec), skip_bad_records=bool(config.skip_bad_records),
    )


def build_stream(config, name: str, *, rows: int, tokenizer=None, process_index: int | None = None,
                 process_count: int | None = None, shuffle: bool | None = None, num_epochs: int | None = None,
                 packing: bool | None = None, drop_remainder: bool | None = None,
                 pattern_marker=None, max_segments: int | None = None) -> StreamIterator:
    """One stream from the config with `rows` rows per batch on this host.

    Keyword overrides serve evaluation, e.g. `shuffle=False, num_epochs=1, packing=False`
    for one padded pass in source order. `pattern_marker` (data/scope.py) adds a per-token
    `pattern_mask` to every batch; `max_segments` caps the examples packed in a row.
    """
    config_lib.validate_config(config)
    if name not in config.streams or not config.streams[name].source:
        raise SynthflawError(f"config: stream {name!r} has no source")
    pi, pc = _process(process_index, process_count)
    tokenizer = tokenizer or tok_lib.load_tokenizer(config.tokenizer)
    spec = config_lib.format_spec(config, name)
    source = open_stream_source(config, name, spec)
    if source.bad_records:
        log.warning("stream %s: skipped %d bad records in %s (first: %s)", name, source.bad_records,
                    source.name, source.bad_examples[0])
    epochs = int(config.num_epochs or 0) if num_epochs is None else int(num_epochs)
    return StreamIterator(
        name, source, formats.Formatter(tokenizer, spec), rows=rows, seq_len=config.seq_len,
        packing=config.packing if packing is None else packing, truncation=config.truncation,
        shuffle=config.shuffle if shuffle is None else shuffle, seed=config_lib.stream_seed(config.seed, name),
        num_epochs=epochs or None, process_index=pi, process_count=pc,
        drop_remainder=config.drop_remainder if drop_remainder is None else drop_remainder,
        skip_bad_records=config.skip_bad_records, lookahead=config.lookahead, pattern_marker=pattern_marker,
        max_segments=max_segments, split_across_rows=bool(config.streams[name].get("split_across_rows", False)),
    )


def local_batch_sizes(config, process_count: int) -> dict[str, int]:
    """Rows per stream on one host: the global `stream_batch_sizes` divided by process_count."""
    sizes = config_lib.stream_batch_sizes(config)
    for name, n in sizes.items():
        if n % process_count:
            raise SynthflawError(
                f"config: stream {name!r} gets {n} rows per step, not divisible by {process_count} hosts"
            )
    return {name: n // process_count for name, n in sizes.items()}


def build_mixture(config, *, tokenizer=None, model_vocab_size: int | None = None,
                  process_index: int | None = None, process_count: int | None = None,
                  pattern_markers: dict | None = None,
                  segment_limits: dict[str, int] | None = None) -> MixtureIterator:
    """The training iterator: {stream: host-local batch} per step, from the data config.

    `process_index`/`process_count` default to JAX's; `model_vocab_size`, when given, is
    checked against the tokenizer; `pattern_markers` {stream: data.scope.PatternMarker}
    adds a `pattern_mask` to that stream's batches; `segment_limits` caps the examples per
    packed row of the named streams (the train step's per-example losses keep that many per row).
    """
    pattern_markers = pattern_markers or {}
    config_lib.validate_config(config)
    pi, pc = _process(process_index, process_count)
    tokenizer = tokenizer or tok_lib.load_tokenizer(config.tokenizer)
    if model_vocab_size is not None:
        tok_lib.check_vocab_size(tokenizer, model_vocab_size, where=f"tokenizer {config.tokenizer}")
    sizes = local_batch_sizes(config, pc)
    for name in config_lib.active_streams(config):
        if name not in sizes:
            log.warning("stream %s has a source but no weight in mixture %r: not used", name, config.mixture)
    streams = {
        name: build_stream(config, name, rows=rows, tokenizer=tokenizer, process_index=pi, process_count=pc,
                           pattern_marker=pattern_markers.get(name),
                           max_segments=(segment_limits or {}).get(name))
        for name, rows in sizes.items()
    }
    return MixtureIterator(streams)
