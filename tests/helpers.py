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


def write_tiny_hf(root, seed: int):
    """The embedded tiny model (random weights from `seed`) with its tokenizer, as an HF
    directory `root/hf`; returns that path."""
    import jax

    from synthflaw_jax import convert
    from synthflaw_jax.data.tokenizer import tiny_tokenizer, tiny_tokenizer_dir
    from synthflaw_jax.models import llama, presets

    cfg = presets.tiny(vocab_size=len(tiny_tokenizer()))
    convert.save_hf(llama.init_params(cfg, jax.random.key(seed)), cfg, root / "hf",
                    assets_from=tiny_tokenizer_dir(), progress=False)
    return root / "hf"
