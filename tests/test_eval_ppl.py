"""Perplexity equals exp of an independent numpy NLL computed from transformers' logits."""
import json
import math

import numpy as np
import pytest

from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.eval import perplexity
from tests.test_generate import make_tiny_model_dir
from tests.helpers import run_eval_cli as run_cli

TEXT = ("The river starts high in the hills, where snow melts in the spring and runs down through "
        "the rocks. By the time it reaches the town it is wide and slow.")
OTHER = "A small library stands near the bridge and opens at nine."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_tiny_model_dir(tmp_path_factory.mktemp("ppl") / "hf", seed=4)
    import transformers

    from synthflaw_jax.data.tokenizer import tiny_tokenizer

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager").eval()
    return path, hf, tiny_tokenizer()


def hf_logp(hf, ids):
    import torch

    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0].double().numpy()
    m = logits.max(-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))


def reference_nll(hf, ids, max_length, stride):
    """Total NLL and token count, windows as in the Hugging Face perplexity guide."""
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + max_length, len(ids))
        logp = hf_logp(hf, ids[begin:end])
        for j in range(max(prev_end, begin + 1), end):  # targets not scored by an earlier window
            total -= logp[j - begin - 1, ids[j]]
            count += 1
        prev_end = end
        if end == len(ids):
            break
    return total, count


def test_whole_text_in_one_window(tiny, tmp_path):
    path, hf, tok = tiny
    data = tmp_path / "t.txt"
    data.write_text(TEXT)
    assert run_cli(["ppl", "--model", str(path), "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    ids = tok(TEXT)["input_ids"]
    assert ids[0] == 1 and m["tokens"] == len(ids) - 1 and m["windows"] == 1
    logp = hf_logp(hf, ids)
    nll = -np.mean([logp[j - 1, ids[j]] for j in range(1, len(ids))])
    assert m["nll"] == pytest.approx(nll, abs=1e-5)
    assert m["ppl"] == pytest.approx(math.exp(nll), rel=1e-5)


def test_sliding_windows_and_several_documents(tiny, tmp_path):
    path, hf, tok = tiny
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": TEXT}) + "\n" + json.dumps({"text": OTHER}) + "\n")
    m = perplexity.run(path, data, tmp_path / "o", max_length=16, stride=8, batch_size=4)
    total, count = 0.0, 0
    for doc in (TEXT, OTHER):
        t, c = reference_nll(hf, tok(doc)["input_ids"], 16, 8)
        total, count = total + t, count + c
    assert m["tokens"] == count == len(tok(TEXT)["input_ids"]) + len(tok(OTHER)["input_ids"]) - 2
    assert m["nll"] == pytest.approx(total / count, abs=1e-5)
    assert m["ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_windows_score_every_token_once():
    for n, length, stride in [(10, 4, 2), (10, 4, 4), (3, 8, 4), (9, 3, 1), (2, 2, 2)]:
        reqs = perplexity.windows(list(range(n)), length, stride)
        scored = [tok for r in reqs for tok, w in zip(r.ids, r.weights) if w]
        assert scored == list(range(1, n)), (n, length, stride)
        assert all(len(r.ids) <= length and r.weights[0] == 0 for r in reqs)
    with pytest.raises(SynthflawError, match="--stride"):
        perplexity.windows([1, 2, 3], 4, 5)


def test_documented_file_types(tmp_path):
    """What docs/eval.md lists: plain text as one document, JSON Lines as one per line."""
    text = "# Notes\n\nThe library opens at nine.\n"
    for name in ("a.txt", "a.md", "a"):
        (tmp_path / name).write_text(text)
        assert perplexity.load_documents(tmp_path / name) == [text]
    for name in ("b.jsonl", "b.json"):
        (tmp_path / name).write_text('{"text": "one"}\n{"text": "two"}\n')
        assert perplexity.load_documents(tmp_path / name) == ["one", "two"]


@pytest.mark.parametrize("name, content, message", [
    ("e.txt", "   \n", "e.txt: no text to score"),
    ("b.jsonl", '{"text": "ok"}\n{"txt": "x"}\n', "b.jsonl:2: field 'text'"),
    ("c.csv", "a,b\n", "c.csv: unknown format '.csv' (expected plain text: .txt, .md"),
    ("d.rst", "Title\n=====\n", "d.rst: unknown format '.rst'"),
])
def test_bad_files_exit_2(tiny, tmp_path, capsys, name, content, message):
    path, _, _ = tiny
    (tmp_path / name).write_text(content)
    assert run_cli(["ppl", "--model", str(path), "--data", str(tmp_path / name), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
