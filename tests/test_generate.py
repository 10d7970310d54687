"""KV-cache generation: exactly transformers' greedy tokens, our own no-cache loop's tokens,
reproducible sampling, stop tokens, sharded caches, the text API and `synthflaw generate`."""
import json
import logging

import jax
import numpy as np
import pytest

import synthflaw_jax
from synthflaw_jax import cli, convert
from synthflaw_jax.data.tokenizer import tiny_tokenizer, tiny_tokenizer_dir
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models import generate as gen
from synthflaw_jax.models import loading, presets
from synthflaw_jax.sharding import make_mesh
from tests.hf_fixtures import build_hf_model, save_hf_model

N_NEW = 10
PAD, EOS = 0, 2
NEVER = (-1,)  # a stop id no token has: rows run to max_new_tokens (and share the compiled decoder)


def make_tiny_model_dir(path, seed=0):
    """Our tiny preset with random weights and the shipped tokenizer, saved as an HF directory."""
    cfg = presets.tiny(max_position_embeddings=128)
    params = loading.random_model(cfg, seed=seed).params
    convert.save_hf(params, cfg, path, assets_from=tiny_tokenizer_dir(), progress=False)
    return path


def left_padded_prompts(vocab, lengths=(3, 7, 1, 5), width=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    for i, n in enumerate(lengths):
        ids[i, width - n:] = rng.integers(3, vocab, n)
        mask[i, width - n:] = 1
    return ids, mask


def hf_greedy(model, ids, mask, n_new, eos):
    import torch

    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                             max_new_tokens=n_new, pad_token_id=PAD, eos_token_id=eos).numpy()
    new = out[:, ids.shape[1]:]
    return np.pad(new, ((0, 0), (0, n_new - new.shape[1])), constant_values=PAD)


_PAIRS = {}


def _pair(variant, tmp_path_factory):
    if variant not in _PAIRS:
        hf = build_hf_model(variant)
        path = save_hf_model(hf, tmp_path_factory.mktemp(variant))
        _PAIRS[variant] = (hf, synthflaw_jax.load(path))
    return _PAIRS[variant]


@pytest.fixture(scope="module", params=["llama_untied", "qwen2"])
def hf_pair(request, tmp_path_factory):
    return _pair(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory):
    return _pair("llama_untied", tmp_path_factory)


def ours(model, ids, mask, n_new=N_NEW, stops=(EOS,), **kw):
    return gen.generate_ids(model.config, model.params, ids, mask, max_new_tokens=n_new, stop_ids=stops,
                            pad_id=PAD, mesh=model.mesh, **kw)


def test_greedy_equals_transformers_generate(hf_pair):
    hf, model = hf_pair
    ids, mask = left_padded_prompts(hf.config.vocab_size)
    got = ours(model, ids, mask)
    want = hf_greedy(hf, ids, mask, N_NEW, EOS)
    for row in range(len(ids)):
        np.testing.assert_array_equal(got[row], want[row], err_msg=f"row {row}")


def test_greedy_equals_our_no_cache_loop(llama_pair):
    _, model = llama_pair
    ids, mask = left_padded_prompts(model.config.vocab_size, seed=1)
    got = ours(model, ids, mask, stops=NEVER)
    # Full forward (no cache) over a fixed-width buffer: prompt, then generated tokens written
    # in on the right; right-side slots not yet written are padding (mask 0).
    width = ids.shape[1]
    seq = np.concatenate([ids, np.zeros((len(ids), N_NEW), ids.dtype)], axis=1)
    m = np.concatenate([mask, np.zeros((len(ids), N_NEW), mask.dtype)], axis=1)
    for t in range(N_NEW):
        logits = np.asarray(model.logits(seq, m))
        seq[:, width + t] = np.argmax(logits[:, width + t - 1], axis=-1)
        m[:, width + t] = 1
    np.testing.assert_array_equal(got, seq[:, width:])


def test_stop_token_ends_only_its_row(hf_pair):
    hf, model = hf_pair
    ids, mask = left_padded_prompts(hf.config.vocab_size, seed=2)
    free = ours(model, ids, mask, stops=NEVER)
    # a token row 0 emits at step 3 (and not before) becomes the stop token
    step = next(k for k in range(3, N_NEW - 1) if free[0, k] not in free[0, :k] and free[0, k] != PAD)
    stop = int(free[0, step])
    got = ours(model, ids, mask, stops=(stop,))
    assert got[0, step] == stop and (got[0, step + 1:] == PAD).all()
    np.testing.assert_array_equal(got[0, :step], free[0, :step])
    for row in range(1, len(ids)):
        hits = np.flatnonzero(free[row] == stop)
        end = hits[0] + 1 if len(hits) else N_NEW
        np.testing.assert_array_equal(got[row, :end], free[row, :end])
    np.testing.assert_array_equal(got, hf_greedy(hf, ids, mask, N_NEW, stop))


def test_sharded_cache_gives_the_same_tokens(llama_pair, monkeypatch):
    _, model = llama_pair
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    sharded = synthflaw_jax.load(model.path, mesh=mesh)
    ids, mask = left_padded_prompts(model.config.vocab_size, seed=3)
    n_new = 40  # positions stop at 64 (the config's limit)
    # a first cache segment of 16 tokens, then growth to 32 and 40: the grown caches stay sharded
    monkeypatch.setattr(gen, "FIRST_SEGMENT", 16)
    assert gen.cache_segments(n_new) == [16, 32, 40]
    np.testing.assert_array_equal(ours(sharded, ids, mask, n_new=n_new, stops=NEVER),
                                  ours(model, ids, mask, n_new=n_new, stops=NEVER))


def test_sampling_is_reproducible_and_top_k_1_is_greedy(llama_pair):
    _, model = llama_pair
    ids, mask = left_padded_prompts(model.config.vocab_size, seed=4)
    hot = gen.Sampling(temperature=1.5)
    a = ours(model, ids, mask, stops=NEVER, sampling=hot, key=jax.random.key(7))
    b = ours(model, ids, mask, stops=NEVER, sampling=hot, key=jax.random.key(7))
    c = ours(model, ids, mask, stops=NEVER, sampling=hot, key=jax.random.key(8))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    greedy = ours(model, ids, mask, stops=NEVER)
    assert (a != greedy).any()
    top1 = ours(model, ids, mask, stops=NEVER, sampling=gen.Sampling(1.5, top_k=1), key=jax.random.key(7))
    tiny_p = ours(model, ids, mask, stops=NEVER, sampling=gen.Sampling(1.5, top_p=1e-6), key=jax.random.key(7))
    np.testing.assert_array_equal(top1, greedy)
    np.testing.assert_array_equal(tiny_p, greedy)


def test_top_k_and_top_p_keep_the_right_tokens():
    probs = np.array([0.05, 0.5, 0.15, 0.3])  # sorted: 1 (.5), 3 (.3), 2 (.15), 0 (.05)
    logits = np.log(probs)[None, :].astype(np.float32)
    keys = jax.random.split(jax.random.key(0), 4000)

    def draw(sampling):
        return np.asarray(jax.jit(jax.vmap(lambda k: gen.sample_next(logits, k, sampling)[0]))(keys))

    assert set(draw(gen.Sampling(1.0, top_k=2))) == {1, 3}
    assert set(draw(gen.Sampling(1.0, top_p=0.7))) == {1, 3}  # .5 < .7 <= .8
    assert set(draw(gen.Sampling(1.0, top_p=0.79))) == {1, 3}
    assert set(draw(gen.Sampling(1.0, top_p=0.81))) == {1, 3, 2}
    freq = np.bincount(draw(gen.Sampling(1.0, top_p=0.7)), minlength=4) / len(keys)
    np.testing.assert_allclose(freq[[1, 3]], [0.5 / 0.8, 0.3 / 0.8], atol=0.03)  # renormalised
    assert set(draw(gen.Sampling(1.0))) == {0, 1, 2, 3}


def test_bad_sampling_and_prompt_arguments():
    with pytest.raises(SynthflawError, match="temperature"):
        gen.Sampling(temperature=-1)
    with pytest.raises(SynthflawError, match="top-p"):
        gen.Sampling(1.0, top_p=0)
    cfg = presets.tiny()
    with pytest.raises(SynthflawError, match="left-padded"):
        gen.generate_ids(cfg, None, np.array([[5, 0]]), np.array([[1, 0]]), max_new_tokens=2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "hf")


def test_text_generation_applies_the_chat_template(tiny_dir):
    model = synthflaw_jax.load(tiny_dir)
    tok = tiny_tokenizer()
    prompts = ["Hello there", "Name a sea."]
    templated = [tok("<|bos|><|user|>" + p + "<|end|><|assistant|>", add_special_tokens=False)["input_ids"]
                 for p in prompts]
    assert gen.encode_prompts(tok, prompts) == templated
    assert gen.encode_prompts(tok, prompts, chat_template=False) == [[1] + tok(p, add_special_tokens=False)["input_ids"]
                                                                     for p in prompts]
    got = model.generate(prompts, 6, batch_size=2)
    ids, mask = gen.left_pad(templated, 16, PAD)  # what generate() builds: bucket 16, batch 2
    new = ours(model, ids, mask, n_new=6)
    assert got == [tok.decode(gen.cut_at_stop(row, [EOS]), skip_special_tokens=True) for row in new]


def run_generate_cli(argv, monkeypatch):
    return cli.main(["generate", *argv])


def test_generate_command_writes_jsonl(tiny_dir, tmp_path, monkeypatch, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n\n{"prompt": "Tell me a story"}\n')
    out = tmp_path / "r.jsonl"
    argv = ["--model", str(tiny_dir), "--prompts", str(prompts), "--max-new-tokens", "6", "--batch-size", "2",
            "--out", str(out)]
    assert run_generate_cli(argv, monkeypatch) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["Hi", "Tell me a story"]
    assert rows[1]["response"] == synthflaw_jax.load(tiny_dir).generate(["Tell me a story", "Hi"], 6, batch_size=2)[0]
    assert run_generate_cli(argv, monkeypatch) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert run_generate_cli(["--model", str(tiny_dir), "--prompt", "Hi", "--max-new-tokens", "6", "--batch-size", "2",
                             "--temperature", "0.8", "--seed", "3", "--top-k", "5"], monkeypatch) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["prompt"] == "Hi" and isinstance(line["response"], str)


def test_generate_command_shows_progress_and_tokens_per_s(tiny_dir, tmp_path, monkeypatch, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n{"prompt": "Tell me a story"}\n{"prompt": "Name a sea."}\n')
    argv = ["--model", str(tiny_dir), "--prompts", str(prompts), "--max-new-tokens", "4", "--batch-size", "2"]
    capsys.readouterr()
    assert run_generate_cli(argv, monkeypatch) == 0
    err = capsys.readouterr().err
    assert "generating: 100%" in err and "3/3" in err and "tok_s=" in err
    assert run_generate_cli([*argv, "--no-progress"], monkeypatch) == 0
    assert "tok_s=" not in capsys.readouterr().err


def test_prompt_length_warning_said_once(tiny_dir, monkeypatch, caplog):
    """Callers that generate batch by batch (analyze's template share) see the warning once."""
    monkeypatch.setattr(gen, "_LENGTH_WARNED", set())
    model = synthflaw_jax.load(tiny_dir)  # max_position_embeddings 128
    caplog.set_level(logging.WARNING)
    for chunk in (["Hello there"], ["Name a sea."], ["Hi"]):
        model.generate(chunk, 125, batch_size=1)
    assert caplog.text.count("exceeds max_position_embeddings 128") == 1
    model.generate(["Hi"], 8, batch_size=1)  # within the limit: nothing
    assert caplog.text.count("exceeds max_position_embeddings") == 1


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "a"}\n{"text": "b"}\n', "p.jsonl:2: field 'prompt'"),
    ('{"prompt": "a"}\nnot json\n', "p.jsonl:2: bad JSON"),
    ("", "no prompts"),
])
def test_generate_command_bad_prompts_exit_2(tiny_dir, tmp_path, monkeypatch, capsys, content, message):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(content)
    assert run_generate_cli(["--model", str(tiny_dir), "--prompts", str(prompts)], monkeypatch) == 2
    assert message in capsys.readouterr().err


def test_generate_command_model_errors_exit_2(tiny_dir, tmp_path, monkeypatch, capsys):
    assert run_generate_cli(["--model", str(tmp_path / "none"), "--prompt", "x"], monkeypatch) == 2
    assert "no such file" in capsys.readouterr().err
    assert run_generate_cli(["--model", str(tiny_dir), "--prompt", "x", "--top-p", "2"], monkeypatch) == 2
    assert "--top-p" in capsys.readouterr().err


@pytest.mark.parametrize("variant, window", [("llama_untied", None), ("mistral", 48)])
def test_long_decode_equals_transformers(variant, window, tmp_path):
    """Hundreds of cache slots, left-padded prompts of mixed lengths (one of a single token)
    and, for mistral, a sliding window much shorter than the decode: every greedy token equals
    transformers' (its eager attention applies the window on every step)."""
    import torch

    extra = {"max_position_embeddings": 512} | ({"sliding_window": window} if window else {})
    hf = build_hf_model(variant, seed=5, **extra)
    model = synthflaw_jax.load(save_hf_model(hf, tmp_path / variant))
    assert model.config.sliding_window == window
    n_new = 300
    ids, mask = left_padded_prompts(hf.config.vocab_size, lengths=(37, 5, 1, 20), width=40, seed=6)
    got = ours(model, ids, mask, n_new=n_new, stops=NEVER)
    with torch.no_grad():
        want = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                           max_new_tokens=n_new, min_new_tokens=n_new, pad_token_id=PAD,
                           eos_token_id=None).numpy()[:, ids.shape[1]:]
    assert len(set(want[0].tolist())) > 5  # a real sequence, not one token repeated
    for row in range(len(ids)):
        np.testing.assert_array_equal(got[row], want[row], err_msg=f"row {row}")


def _while_bodies(hlo: str) -> dict[str, str]:
    """{name: text} of the computations that are the body of some while loop in HLO text."""
    import re

    names = set(re.findall(r"body=(%[\w.\-]+)", hlo))
    comps = {}
    for block in hlo.split("\n\n"):
        head = block.lstrip().split(" ", 1)[0]
        if head in names:
            comps[head] = block
    for chunk in re.split(r"\n(?=%)", hlo):
        head = chunk.split(" ", 1)[0]
        if head in names and head not in comps:
            comps[head] = chunk[: chunk.find("\n}") + 2]
    return comps


def test_decode_loop_never_copies_the_cache_or_the_weights():
    """In the compiled decoder, the decode loop's body holds no copy of a layer's cache (nor of
    the stacked cache) and slices no weights out of the stacked layers: each step reads the
    cache and the weights where they lie and writes each layer's new K/V in place."""
    import re

    cfg = presets.tiny(num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2, hidden_size=96,
                       intermediate_size=160)
    params = loading.random_model(cfg, seed=0).params
    batch, prompt, n_new = 4, 24, 40
    ids, mask = left_padded_prompts(cfg.vocab_size, lengths=(24, 10, 3, 17), width=prompt)
    hlo = gen.decoder().lower(
        params, ids.astype(np.int32), mask.astype(np.int32), jax.random.key(0), gen._knobs(gen.Sampling()),
        np.asarray(NEVER, np.int32), np.int32(PAD), cfg=gen.Static(cfg), mesh=None, max_new_tokens=n_new,
        greedy=True,
    ).compile().as_text()
    bodies = _while_bodies(hlo)
    # the decode loop is the one carrying the [B, max_new_tokens] output buffer
    loop = [b for b in bodies.values() if f"s32[{batch},{n_new}]" in b.splitlines()[0]]
    assert gen.cache_segments(n_new) == [n_new] and len(loop) == 1, list(bodies)
    body = loop[0]
    slots = prompt + n_new
    kv, d = cfg.num_key_value_heads, cfg.head_dim
    layer_caches = {"k": f"f32[{batch},{kv},{d},{slots}]", "v": f"f32[{batch},{kv},{slots},{d}]"}
    stacked = [f"f32[{cfg.num_hidden_layers},{shape[4:]}" for shape in layer_caches.values()]
    ops = [line.strip() for line in body.splitlines()[1:] if " = " in line]
    not_made = "get-tuple-element|bitcast|parameter"  # views of the loop's own buffers
    assert not [op for op in ops if op.split(" = ")[1].startswith(tuple(stacked))]
    for name, layer_cache in layer_caches.items():
        cache_made = [op for op in ops if re.match(rf"%\S+ = {re.escape(layer_cache)}\S* (?!{not_made})", op)]
        assert not [op for op in cache_made if " copy(" in op], f"the loop body copies a layer's {name} cache"
        # what does produce a cache-shaped value is one in-place update per layer
        assert len(cache_made) == cfg.num_hidden_layers, cache_made
        assert all("dynamic-update-slice" in op for op in cache_made), cache_made
    # no layer's weights are sliced or copied out of the stacked layers inside the loop
    weight_shapes = {"f32[" + ",".join(map(str, x.shape[1:])) + "]" for x in jax.tree.leaves(params["layers"])
                     if x.ndim > 2}
    made = [op for op in ops if op.split(" = ")[1].split("{")[0].split(" ")[0] in weight_shapes]
    assert not [op for op in made if "slice" in op or " copy(" in op], made
