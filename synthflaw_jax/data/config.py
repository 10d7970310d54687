"""The data pipeline's `ml_collections.ConfigDict` (`default_data_config`) and its checks.

Override any field from the command line, e.g. `--config.data.seq_len=256` or
`--config.data.streams.forget.source=/data/tofu/forget10.json`.
"""
from __future__ import annotations

import zlib

import ml_collections

from synthflaw_jax.data.formats import FORMATS, LOSS_MASKS, FormatSpec
from synthflaw_jax.data.packing import TRUNCATION_POLICIES
from synthflaw_jax.errors import SynthflawError

STREAMS = ("forget", "replay", "retain")  # the order of a positional mixture such as "1:3"


def _stream(source: str = "", source_type: str = "jsonl", fmt: str = "auto") -> ml_collections.ConfigDict:
    s = ml_collections.ConfigDict()
    s.source = source            # jsonl: a file, a glob or a directory; tfds: a prepared dataset dir or a
                                 # registered name; sample: synthetic_qa | stdlib_text. "" = stream unused.
    s.source_type = source_type  # "jsonl" | "tfds" | "sample"
    s.split = "train"            # tfds only: the split to read
    s.data_dir = ""              # tfds only: where a registered dataset name is looked up ("" = TFDS default)
    s.format = fmt               # "auto" (from each record's keys) | "qa" | "pr" | "chat" | "text"
    s.split_across_rows = False  # True: fill every row, splitting examples at row ends (no truncation,
                                 # no padding); for plain text, not for streams whose loss needs whole examples
    return s


def default_data_config() -> ml_collections.ConfigDict:
    """The data config of the tiny default: synthetic Q-A to forget, stdlib docstrings to replay."""
    c = ml_collections.ConfigDict()
    c.tokenizer = "tiny"          # "tiny" (shipped BPE) | path to tokenizer.json | HF tokenizer/model dir
    c.seq_len = 128               # tokens per row
    c.packing = True              # True: several examples per row (segment_ids/positions); False: one, padded
    c.truncation = "truncate"     # example longer than seq_len: "truncate" | "drop" | "error" (counts reported)
    c.skip_bad_records = False    # True: leave out malformed lines/records (counted) instead of failing
    c.seed = 0                    # one seed for all shuffling; each stream derives its own from it and its name
    c.shuffle = True              # reshuffle every epoch of every stream (deterministic from the seed)
    c.num_epochs = 0              # 0 = repeat forever (training runs by steps); N = stop after N epochs
                                  # of a stream (the iteration ends when the first stream runs out)
    c.drop_remainder = False      # at the end of a finite stream: False = pad the last batch, True = drop it
    c.batch_size = 8              # rows per step over ALL hosts and streams together
    c.mixture = "forget=1,replay=1"  # rows per stream by ratio: "forget=1,replay=1,retain=2" or positional
                                  # "1:1[:2]" (order forget, replay, retain); each stream must get >= 1 row
    c.loss_mask = "targets"       # "targets": answers, assistant turns, all of plain text; "all": every token
    c.add_bos = True              # start each example with the tokenizer's BOS (chat: unless the template does)
    c.add_eos = True              # end Q-A / prompt-response / text examples with EOS, as a target
    c.lookahead = 64              # examples tokenized per tokenizer call (speed only; no effect on batches)

    c.templates = ml_collections.ConfigDict()
    c.templates.qa_prompt = "Question: {question}\nAnswer:"  # str.format over the record's fields
    c.templates.qa_target = " {answer}"                      # the learned/forgotten part of a Q-A record
    c.templates.pr_prompt = "{prompt}\n"                      # prompt-response records
    c.templates.pr_target = "{response}"
    c.templates.chat_template = ""  # Jinja chat template; "" = the tokenizer's own (or a simple default)

    c.streams = ml_collections.ConfigDict()
    c.streams.forget = _stream("synthetic_qa", "sample")   # D_f: the synthetic Q-A to unlearn
    c.streams.replay = _stream("stdlib_text", "sample")    # D_r: non-synthetic text to keep
    c.streams.retain = _stream()                           # optional: e.g. TOFU retain90 ("" = off)
    return c


def format_spec(config: ml_collections.ConfigDict, stream: str) -> FormatSpec:
    """The FormatSpec of one stream."""
    t = config.templates
    return FormatSpec(
        format=config.streams[stream].format, qa_prompt=t.qa_prompt, qa_target=t.qa_target,
        pr_prompt=t.pr_prompt, pr_target=t.pr_target, chat_template=t.chat_template,
        loss_mask=config.loss_mask, add_bos=bool(config.add_bos), add_eos=bool(config.add_eos),
    )


def active_streams(config: ml_collections.ConfigDict) -> list[str]:
    """Streams with a source, in STREAMS order."""
    return [name for name in STREAMS if name in config.streams and config.streams[name].source]


def parse_mixture(text: str, streams: list[str] | tuple[str, ...] = STREAMS) -> dict[str, float]:
    """"forget=1,replay=3" or "1:3" -> {"forget": 1.0, "replay": 3.0}; SynthflawError when it does not parse."""
    text = str(text).strip()
    bad = f"config: mixture {text!r} does not parse; write e.g. 'forget=1,replay=1' or '1:1'"
    weights: dict[str, float] = {}
    try:
        if "=" in text:
            for part in text.split(","):
                name, value = (x.strip() for x in part.split("="))
                if name in weights:
                    raise ValueError
                weights[name] = float(value)
        else:
            values = [float(v) for v in text.split(":")]
            if len(values) > len(STREAMS):
                raise ValueError
            weights = dict(zip(STREAMS, values))
    except ValueError:
        raise SynthflawError(bad)
    if not weights or any(not (w >= 0) or w == float("inf") for w in weights.values()):
        raise SynthflawError(bad + " (weights must be finite and >= 0)")
    for name in weights:
        if name not in STREAMS:
            raise SynthflawError(f"config: mixture names stream {name!r}; streams are {', '.join(STREAMS)}")
        if weights[name] > 0 and name not in streams:
            raise SynthflawError(f"config: mixture gives weight to stream {name!r}, which has no source")
    weights = {k: v for k, v in weights.items() if v > 0}
    if not weights:
        raise SynthflawError(bad + " (all weights are 0)")
    return weights


def stream_batch_sizes(config: ml_collections.ConfigDict) -> dict[str, int]:
    """Global rows per step for each stream: `batch_size` split by `mixture` (largest remainder)."""
    weights = parse_mixture(config.mixture, active_streams(config))
    total = int(config.batch_size)
    if total < 1:
        raise SynthflawError(f"config: batch_size {total} must be >= 1")
    wsum = sum(weights.values())
    exact = {k: total * w / wsum for k, w in weights.items()}
    sizes = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (-(exact[k] - sizes[k]), STREAMS.index(k)))[: total - sum(sizes.values())]:
        sizes[k] += 1
    for k, n in sizes.items():
        if n == 0:
            raise SynthflawError(
                f"config: mixture {config.mixture!r} with batch_size {total} gives stream {k!r} no rows; raise batch_size"
            )
    return {k: sizes[k] for k in STREAMS if k in sizes}


def stream_seed(seed: int, stream: str) -> int:
    """A stream's shuffle seed: the config seed mixed with the stream's name (fits grain's uint32)."""
    return (int(seed) * 1_000_003 + zlib.crc32(stream.encode("utf-8"))) % (2**32)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raise SynthflawError on values the pipeline cannot use."""
    if int(config.seq_len) < 2:
        raise SynthflawError(f"config: seq_len {config.seq_len} must be >= 2")
    if config.truncation not in TRUNCATION_POLICIES:
        raise SynthflawError(f"config: truncation {config.truncation!r} is not one of {', '.join(TRUNCATION_POLICIES)}")
    if config.loss_mask not in LOSS_MASKS:
        raise SynthflawError(f"config: loss_mask {config.loss_mask!r} is not one of {', '.join(LOSS_MASKS)}")
    if config.num_epochs is not None and int(config.num_epochs) < 0:
        raise SynthflawError(f"config: num_epochs {config.num_epochs} must be >= 0 (0 = repeat forever)")
    for name in active_streams(config):
        if config.streams[name].format not in FORMATS:
            raise SynthflawError(
                f"config: streams.{name}.format {config.streams[name].format!r} is not one of {', '.join(FORMATS)}"
            )
    if not 0 <= int(config.seed) < 2**32:
        raise SynthflawError(f"config: seed {config.seed} must be in [0, 2**32)")
    stream_batch_sizes(config)
