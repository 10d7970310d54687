"""Rebuild the tiny default tokenizer shipped in `synthflaw_jax/resources/tokenizer/`.

A byte-level BPE with exactly `VOCAB_SIZE` entries (special tokens included), trained with
`tokenizers` on local text only: the Python standard library's docstrings plus the
synthetic Q-A generator's output (seed 0). Same Python version, same files.

    python -m synthflaw_jax.data.build_tiny_tokenizer [--out DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import platform

VOCAB_SIZE = 2048
PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
USER, ASSISTANT, SYSTEM, END = "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, USER, ASSISTANT, SYSTEM, END]  # ids 0..6 in this order
# Each turn is <|role|>content<|end|>; an assistant turn's target is "content<|end|>".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
N_SYNTHETIC = 2000


def training_corpus() -> list[str]:
    """The tokenizer's training text, in a fixed order."""
    from synthflaw_jax.data import sample_data

    docs = sample_data.stdlib_docstrings()
    docs += [sample_data.render_qa_text(r) for r in sample_data.synthetic_qa_records(N_SYNTHETIC, seed=0)]
    return docs


def train_tokenizer(corpus: list[str], vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE `tokenizers.Tokenizer` trained on `corpus` with our special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    if tok.get_vocab_size(with_added_tokens=True) != vocab_size:
        raise RuntimeError(
            f"trained vocab has {tok.get_vocab_size(with_added_tokens=True)} entries, expected {vocab_size}: corpus too small"
        )
    # `tokenizer(text)` in transformers then starts with <|bos|>, as Llama's does.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return tok


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def build(out_dir: str | os.PathLike) -> pathlib.Path:
    """Train and write a HF tokenizer directory (tokenizer.json, tokenizer_config.json, special_tokens_map.json)."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = training_corpus()
    tok = train_tokenizer(corpus)
    _atomic_write(out / "tokenizer.json", tok.to_str(pretty=False))
    specials = {"pad_token": PAD, "bos_token": BOS, "eos_token": EOS}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "additional_special_tokens": [USER, ASSISTANT, SYSTEM, END],
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    _atomic_write(out / "tokenizer_config.json", json.dumps(config, indent=1) + "\n")
    special_map = {**specials, "additional_special_tokens": [USER, ASSISTANT, SYSTEM, END]}
    _atomic_write(out / "special_tokens_map.json", json.dumps(special_map, indent=1) + "\n")
    provenance = {
        "built_by": "python -m synthflaw_jax.data.build_tiny_tokenizer",
        "python": platform.python_version(),
        "corpus_documents": len(corpus),
        "corpus_sha256": hashlib.sha256("\x00".join(corpus).encode("utf-8")).hexdigest(),
        "vocab_size": VOCAB_SIZE,
    }
    _atomic_write(out / "provenance.json", json.dumps(provenance, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: rebuild the tiny tokenizer (default: into the package's resources)."""
    from synthflaw_jax.data.tokenizer import tiny_tokenizer_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(tiny_tokenizer_dir()), help="output directory")
    args = parser.parse_args(argv)
    print(f"wrote {build(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
