"""`synthflaw data {sample,build-tfds,stats}`: sample corpora, TFDS preparation, a dry run of a source."""
from __future__ import annotations

import json
import pathlib
import sys

from synthflaw_jax.errors import SynthflawError

HELP = "write the sample corpora, prepare JSONL as TFDS (array_record), or dry-run a data source"


def add_arguments(parser) -> None:
    """Three actions: sample, build-tfds, stats."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("sample", help="write synthetic_qa.jsonl (uniform template) and stdlib_text.jsonl")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n-qa", type=int, default=2000, help="synthetic Q-A pairs (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the two sample files if they exist")

    p = sub.add_parser("build-tfds", help="prepare a JSONL file/glob/directory as a TFDS array_record dataset")
    p.add_argument("source", help="JSONL file, glob or directory")
    p.add_argument("--data-dir", required=True, help="TFDS data directory to write into")
    p.add_argument("--name", default="default", help="builder config name (one per dataset in a data dir)")
    p.add_argument("--format", default="auto", help="check records against this format (auto|qa|pr|chat|text)")
    p.add_argument("--skip-bad-records", action="store_true", help="leave out malformed records (counted)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset of the same --name")

    p = sub.add_parser("stats", help="read, tokenize and pack a source once; print counts as JSON, with the "
                                     "tokenizer, sequence length and packing they were counted with")
    p.add_argument("source", help="JSONL file/glob/directory, prepared TFDS dir, or a sample name")
    p.add_argument("--source-type", default="jsonl", choices=("jsonl", "tfds", "sample"))
    p.add_argument("--format", default="auto", help="auto|qa|pr|chat|text")
    p.add_argument("--tokenizer", default="tiny", help="'tiny', a tokenizer.json or an HF directory")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--rows", type=int, default=8, help="rows per batch")
    p.add_argument("--no-packing", action="store_true", help="one example per row, padded")
    p.add_argument("--truncation", default="truncate", choices=("truncate", "drop", "error"))
    p.add_argument("--loss-mask", default="targets", choices=("targets", "all"))
    p.add_argument("--skip-bad-records", action="store_true", help="leave out malformed records (counted)")


def _run_sample(args) -> int:
    from synthflaw_jax.data.sample_data import write_sample_data

    if args.n_qa < 1:
        raise SynthflawError(f"--n-qa {args.n_qa} must be >= 1")
    for name, path in write_sample_data(args.out, args.n_qa, args.seed, args.overwrite).items():
        print(f"{name}: {path}")
    return 0


def _run_build_tfds(args) -> int:
    from synthflaw_jax.data import formats
    from synthflaw_jax.data.tfds_builder import build_tfds

    spec = formats.FormatSpec(format=args.format)
    path = build_tfds(args.source, args.data_dir, name=args.name,
                      validate=lambda r: formats.validate(r, spec), skip_bad_records=args.skip_bad_records,
                      overwrite=args.overwrite)
    print(path)
    return 0


def _run_stats(args) -> int:
    from synthflaw_jax.data.config import default_data_config
    from synthflaw_jax.data.pipeline import build_stream

    config = default_data_config()
    config.tokenizer = args.tokenizer
    config.seq_len = args.seq_len
    config.packing = not args.no_packing
    config.truncation = args.truncation
    config.loss_mask = args.loss_mask
    config.skip_bad_records = args.skip_bad_records
    config.mixture = "forget=1"
    config.streams.forget.source = args.source
    config.streams.forget.source_type = args.source_type
    config.streams.forget.format = args.format
    config.streams.replay.source = ""
    if args.rows < 1:
        raise SynthflawError(f"--rows {args.rows} must be >= 1")
    stream = build_stream(config, "forget", rows=args.rows, process_index=0, process_count=1,
                          shuffle=False, num_epochs=1)
    for _ in stream:
        pass
    stats = stream.stats()
    capacity = stats["batches"] * args.rows * args.seq_len
    tokenizer = "tiny (shipped with synthflaw_jax)" if args.tokenizer == "tiny" else \
        str(pathlib.Path(args.tokenizer).expanduser().resolve())
    report = {
        "source": args.source,
        "tokenizer": tokenizer,
        "seq_len": args.seq_len,
        "rows": args.rows,
        "packing": not args.no_packing,
        "records": stream.num_records,
        **{k: v for k, v in stats.items() if k != "epoch"},
        "fill": round(stats["tokens"] / capacity, 4) if capacity else 0.0,
    }
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


def run(args) -> int:
    """Dispatch to the chosen action."""
    return {"sample": _run_sample, "build-tfds": _run_build_tfds, "stats": _run_stats}[args.action](args)
