"""The shipped tiny tokenizer: exact size, special tokens, offline loading, deterministic rebuild."""
import json

import pytest
from transformers import AutoTokenizer

from synthflaw_jax.data import build_tiny_tokenizer as build
from synthflaw_jax.data import tokenizer as tok_lib
from synthflaw_jax.errors import SynthflawError


def test_shipped_files_are_small_and_complete():
    d = tok_lib.tiny_tokenizer_dir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (d / name).is_file(), name
    assert sum(p.stat().st_size for p in d.iterdir()) < 300_000


def test_vocab_is_exactly_2048_with_the_special_tokens():
    tok = AutoTokenizer.from_pretrained(str(tok_lib.tiny_tokenizer_dir()), local_files_only=True)
    assert len(tok) == 2048
    raw = json.loads((tok_lib.tiny_tokenizer_dir() / "tokenizer.json").read_text())
    assert raw["model"]["type"] == "BPE"
    assert len(raw["model"]["vocab"]) == 2048  # specials are in the trained vocab, not added on top
    expected = ["<|pad|>", "<|bos|>", "<|eos|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    assert tok.convert_tokens_to_ids(expected) == list(range(7))
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<|pad|>", "<|bos|>", "<|eos|>")
    assert max(tok.get_vocab().values()) == 2047


def test_round_trip_and_special_tokens_are_single_ids():
    tok = tok_lib.tiny_tokenizer()
    text = "  Question: Wer ist Ünïcödé? 日本語\n\tAnswer: The answer is 42."
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.encode("<|user|>hi<|end|>", add_special_tokens=False)[0] == 3
    assert tok.encode("hi")[0] == tok.bos_token_id  # like Llama: BOS when special tokens are on


def test_chat_template_renders_turns():
    tok = tok_lib.tiny_tokenizer()
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == "<|bos|><|user|>Hi<|end|><|assistant|>Hello<|end|>"
    assert tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True).endswith("<|assistant|>")


def test_rebuild_is_deterministic_and_matches_the_shipped_file(tmp_path):
    a = build.build(tmp_path / "a")
    b = build.build(tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "provenance.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    shipped = tok_lib.tiny_tokenizer_dir()
    recorded = json.loads((shipped / "provenance.json").read_text())
    rebuilt = json.loads((a / "provenance.json").read_text())
    if recorded["corpus_sha256"] == rebuilt["corpus_sha256"]:  # same Python docstrings: same bytes
        assert (a / "tokenizer.json").read_bytes() == (shipped / "tokenizer.json").read_bytes()
    assert tok_lib.load_tokenizer(a / "tokenizer.json").get_vocab() == tok_lib.load_tokenizer(a).get_vocab()


def test_vocab_larger_than_the_model_is_an_error():
    tok = tok_lib.tiny_tokenizer()
    tok_lib.check_vocab_size(tok, 2048)
    tok_lib.check_vocab_size(tok, 32000)
    with pytest.raises(SynthflawError, match="2048 tokens is larger than the model's vocab_size 2047"):
        tok_lib.check_vocab_size(tok, 2047)


def test_bad_tokenizer_paths(tmp_path):
    with pytest.raises(SynthflawError, match="does not exist"):
        tok_lib.load_tokenizer(tmp_path / "nope")
    with pytest.raises(SynthflawError, match="no tokenizer.json"):
        tok_lib.load_tokenizer(tmp_path)
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(SynthflawError, match="cannot load tokenizer"):
        tok_lib.load_tokenizer(broken)


def test_encode_many_is_not_padded_by_an_earlier_padded_call():
    """A padded call on the shared tokenizer must not leak padding into the data pipeline."""
    from synthflaw_jax.data.tokenizer import encode_many, tiny_tokenizer

    tok = tiny_tokenizer()
    texts = ["hello world", "a much longer sentence with many more words in it"]
    clean = encode_many(tok, texts)
    tok(["hi", "hello there friend, how are you"], padding=True, truncation=True, max_length=8)
    assert encode_many(tok, texts) == clean
    assert len(clean[0]) < len(clean[1]) and 0 not in clean[0]  # 0 is <|pad|>
