"""HF -> Orbax -> HF round trips are bit-identical, load in transformers, and bad input exits 2."""
import json
import pathlib
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

import synthflaw_jax
from synthflaw_jax.cli import main
from tests.hf_fixtures import build_hf_model, hf_logits, padded_batch, save_hf_model


def _all_tensors(hf_dir: pathlib.Path) -> dict:
    out = {}
    for f in sorted(hf_dir.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _tiny_tokenizer(out: pathlib.Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "[UNK]": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="[UNK]")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(str(out))


@pytest.fixture(scope="module")
def hf_bf16_sharded(tmp_path_factory):
    """A bf16 Llama-3-style model saved in several safetensors shards, with a tokenizer."""
    model = build_hf_model("llama3_rope", seed=3, dtype="bfloat16")
    path = save_hf_model(model, tmp_path_factory.mktemp("hf_bf16"), max_shard_size="40KB")
    _tiny_tokenizer(path)
    return model, path


def test_round_trip_bit_identical_and_loads_in_transformers(hf_bf16_sharded, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, hf_dir = hf_bf16_sharded
    assert (hf_dir / "model.safetensors.index.json").exists()
    ckpt, back = tmp_path / "ckpt", tmp_path / "back"
    assert main(["convert", "hf-to-orbax", str(hf_dir), str(ckpt), "--no-progress"]) == 0
    assert main(["convert", "orbax-to-hf", str(ckpt), str(back), "--no-progress"]) == 0

    before, after = _all_tensors(hf_dir), _all_tensors(back)
    assert sorted(before) == sorted(after)
    for name in before:
        assert before[name].dtype == after[name].dtype, name
        assert before[name].tobytes() == after[name].tobytes(), name
    assert json.loads((back / "config.json").read_text()) == json.loads((hf_dir / "config.json").read_text())
    for asset in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (back / asset).read_bytes() == (hf_dir / asset).read_bytes(), asset

    # transformers gives the same logits from our output as from the original directory
    ids, mask = padded_batch(model.config.vocab_size)
    real = mask.astype(bool)
    ref = hf_logits(AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.bfloat16), ids, mask)
    got = hf_logits(AutoModelForCausalLM.from_pretrained(str(back), dtype=torch.bfloat16), ids, mask)
    np.testing.assert_array_equal(got[real], ref[real])
    tok = AutoTokenizer.from_pretrained(str(back))
    assert tok("hello world")["input_ids"] == [3, 4]
    assert tok.chat_template is not None


def test_our_writer_shards_and_casts(hf_bf16_sharded, tmp_path):
    from transformers import AutoModelForCausalLM

    _, hf_dir = hf_bf16_sharded
    ckpt, back = tmp_path / "ckpt", tmp_path / "back"
    assert main(["convert", "hf-to-orbax", str(hf_dir), str(ckpt), "--no-progress", "--dtype", "float32"]) == 0
    assert main(["convert", "orbax-to-hf", str(ckpt), str(back), "--no-progress", "--max-shard-size", "30KB"]) == 0
    index = json.loads((back / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all((back / f).exists() for f in files)
    tensors = _all_tensors(back)
    assert all(t.dtype == np.float32 for t in tensors.values())
    original = _all_tensors(hf_dir)
    for name, t in tensors.items():  # bf16 -> f32 is exact
        np.testing.assert_array_equal(t, original[name].astype(np.float32))
    assert json.loads((back / "config.json").read_text())["dtype"] == "float32"
    reloaded = AutoModelForCausalLM.from_pretrained(str(back))
    assert sum(p.numel() for p in reloaded.parameters()) == synthflaw_jax.load(ckpt).config.num_params()


def test_checkpoint_loads_sharded_with_same_logits(tmp_path):
    from synthflaw_jax.sharding import make_mesh

    model = build_hf_model("qwen2", seed=1)
    hf_dir = save_hf_model(model, tmp_path / "hf")
    ckpt = tmp_path / "ckpt"
    assert main(["convert", "hf-to-orbax", str(hf_dir), str(ckpt), "--no-progress", "--mesh", "2,2,2"]) == 0
    ids, mask = padded_batch(model.config.vocab_size)
    ref = hf_logits(model, ids, mask)
    for mesh in (None, make_mesh(1, 4, 2)):
        ours = np.asarray(synthflaw_jax.load(ckpt, mesh=mesh).logits(ids, mask))
        assert np.abs(ours - ref)[mask.astype(bool)].max() < 1e-4


# ------------------------------------------------------------------------------ errors
@pytest.fixture()
def hf_dir(tmp_path):
    return save_hf_model(build_hf_model("llama_untied"), tmp_path / "hf")


def test_loading_our_checkpoint_is_quiet(hf_dir, tmp_path, caplog):
    """Our checkpoints have no _CHECKPOINT_METADATA by design: loading one (whole or streamed
    back to HF) must not warn about it, and other absl warnings still get through."""
    import logging

    ckpt = tmp_path / "ckpt"
    assert main(["convert", "hf-to-orbax", str(hf_dir), str(ckpt), "--no-progress"]) == 0
    assert not (ckpt / "params" / "_CHECKPOINT_METADATA").exists()  # the case the filter is for
    caplog.clear()
    caplog.set_level(logging.INFO)
    synthflaw_jax.load(ckpt)
    assert main(["convert", "orbax-to-hf", str(ckpt), str(tmp_path / "back"), "--no-progress"]) == 0
    assert "_CHECKPOINT_METADATA" not in caplog.text
    logging.getLogger("absl").warning("Metadata file does not exist: elsewhere")  # outside a load
    assert "Metadata file does not exist: elsewhere" in caplog.text


def _run_err(capsys, *argv):
    capsys.readouterr()  # drop what building the fixture printed
    code = main(["convert", *argv, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def _edit_config(hf_dir, **changes):
    cfg = json.loads((hf_dir / "config.json").read_text())
    cfg.update(changes)
    (hf_dir / "config.json").write_text(json.dumps(cfg))


def test_missing_config(hf_dir, tmp_path, capsys):
    (hf_dir / "config.json").unlink()
    assert "config.json" in _run_err(capsys, "hf-to-orbax", str(hf_dir), str(tmp_path / "o"))


def test_malformed_config(hf_dir, tmp_path, capsys):
    (hf_dir / "config.json").write_text("{not json")
    assert "malformed JSON" in _run_err(capsys, "hf-to-orbax", str(hf_dir), str(tmp_path / "o"))


@pytest.mark.parametrize("changes, needle", [
    (dict(model_type="gpt2", architectures=["GPT2LMHeadModel"]), "model_type 'gpt2' is not supported"),
    (dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}), "rope type 'yarn'"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(intermediate_size=100), "has shape"),
])
def test_unsupported_or_inconsistent_config(hf_dir, tmp_path, capsys, changes, needle):
    _edit_config(hf_dir, **changes)
    err = _run_err(capsys, "hf-to-orbax", str(hf_dir), str(tmp_path / "o"))
    assert needle in err
    assert not (tmp_path / "o").exists()


def test_qwen2_sliding_window_refused(tmp_path, capsys):
    hf = save_hf_model(build_hf_model("qwen2"), tmp_path / "hf")
    _edit_config(hf, use_sliding_window=True, sliding_window=4, max_window_layers=1,
                 layer_types=["full_attention", "sliding_attention"])
    assert "sliding" in _run_err(capsys, "hf-to-orbax", str(hf), str(tmp_path / "o"))


def test_truncated_safetensors(hf_dir, tmp_path, capsys):
    f = hf_dir / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])
    err = _run_err(capsys, "hf-to-orbax", str(hf_dir), str(tmp_path / "o"))
    assert "model.safetensors" in err and ("truncated" in err or "corrupt" in err)


def test_corrupt_safetensors_header(hf_dir, tmp_path, capsys):
    f = hf_dir / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:40] = b"\xff" * 32
    f.write_bytes(bytes(data))
    err = _run_err(capsys, "hf-to-orbax", str(hf_dir), str(tmp_path / "o"))
    assert "model.safetensors" in err and "corrupt" in err


def test_pickle_weights_refused(hf_dir, tmp_path, capsys):
    (hf_dir / "model.safetensors").unlink()
    (hf_dir / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    err = _run_err(capsys, "hf-to-orbax", str(hf_dir), str(tmp_path / "o"))
    assert "pytorch_model.bin" in err and "pickle" in err


def test_existing_output_refused_and_untouched(hf_dir, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert "--overwrite" in _run_err(capsys, "hf-to-orbax", str(hf_dir), str(out))
    assert (out / "keep.txt").read_text() == "user data"
    # a failing conversion with --overwrite still leaves the old output in place
    (hf_dir / "config.json").write_text("{}")
    _run_err(capsys, "hf-to-orbax", str(hf_dir), str(out), "--overwrite")
    assert (out / "keep.txt").read_text() == "user data"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]


def test_overwrite_replaces(hf_dir, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "old.txt").write_text("x")
    assert main(["convert", "hf-to-orbax", str(hf_dir), str(out), "--overwrite", "--no-progress"]) == 0
    assert not (out / "old.txt").exists() and (out / "synthflaw_model.json").exists()


def test_orbax_to_hf_needs_a_checkpoint(hf_dir, tmp_path, capsys):
    assert "not a synthflaw model checkpoint" in _run_err(capsys, "orbax-to-hf", str(hf_dir), str(tmp_path / "o"))


def test_checkpoint_shape_mismatch(hf_dir, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert main(["convert", "hf-to-orbax", str(hf_dir), str(ckpt), "--no-progress"]) == 0
    _edit_config(ckpt, vocab_size=97)
    assert "shape" in _run_err(capsys, "orbax-to-hf", str(ckpt), str(tmp_path / "o"))


def test_load_rejects_unknown_directory(tmp_path):
    from synthflaw_jax.errors import SynthflawError

    with pytest.raises(SynthflawError, match="neither an HF model directory"):
        synthflaw_jax.load(tmp_path)
    shutil.rmtree(tmp_path)
    with pytest.raises(SynthflawError, match="no such file"):
        synthflaw_jax.load(tmp_path)


def test_relative_paths_work(hf_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel_hf = hf_dir.relative_to(tmp_path)
    assert main(["convert", "hf-to-orbax", str(rel_hf), "ckpt", "--no-progress"]) == 0
    assert main(["convert", "orbax-to-hf", "ckpt", "back", "--no-progress"]) == 0
    assert synthflaw_jax.load("ckpt").config.num_params() == synthflaw_jax.load("back").config.num_params()
