"""Small helpers shared by the tests."""
import json
import re

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


def products_outside_the_fast_kernel(hlo_text: str) -> tuple[list[str], int]:
    """(each product XLA:CPU kept for its fallback kernel, number of products) in compiled HLO.

    XLA:CPU hands a product to its fast (YNNPACK) kernel, as a fusion of kind `__ynn_fusion`,
    only when the left operand contracts its last axis; any other product is computed by the
    fallback, which ran the attention backward's batched dK/dV products at a tenth of the speed.
    A product counts as kept when the computation it sits in is not one such fusion calls."""
    fast = {re.search(r"calls=%([\w.\-]+)", line).group(1)
            for line in hlo_text.splitlines() if '"kind":"__ynn_fusion"' in line}
    kept, total, computation = [], 0, None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
        if header:
            computation = header.group(1)
        elif re.search(r"= \S+ dot\(", line):
            total += 1
            if computation not in fast:
                kept.append(line.strip()[:200])
    return kept, total
