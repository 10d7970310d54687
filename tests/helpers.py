"""Small helpers shared by the tests."""
import json

from synthflaw_jax import cli


def write_jsonl(path, records):
    """Write `records` as UTF-8 JSONL at `path` and return `path`."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run_eval_cli(argv):
    """`synthflaw eval ARGV` through the real entry point (SynthflawError -> exit 2)."""
    return cli.main(["eval", *argv])
