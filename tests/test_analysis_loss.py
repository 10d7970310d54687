"""Per-corpus model loss and a run's loss curves."""
import json

import numpy as np
import pytest
from scipy.special import log_softmax

from synthflaw_jax.analysis import loss_curves as L
from synthflaw_jax.errors import SynthflawError
from tests.test_analysis_fakes import FakeModel, make_tokenizer


def test_corpus_loss_equals_a_direct_numpy_computation():
    tok = make_tokenizer()
    model = FakeModel(vocab_size=len(tok), tokenizer=tok)
    docs = ["the author in question", "books", "a writer who was born and raised", "love war"]
    out = L.corpus_loss(model, tok, docs, batch_size=3, max_len=16, progress=False)
    nlls, means = [], []
    for ids in tok(docs)["input_ids"]:
        if len(ids) < 2:
            continue  # "books": one token, nothing to predict
        logp = log_softmax(model.logits(np.array([ids]))[0].astype(np.float64), axis=-1)
        nll = -logp[np.arange(len(ids) - 1), ids[1:]]
        nlls.extend(nll)
        means.append(nll.mean())
    assert out["tokens"] == len(nlls) == 3 + 6 + 1
    assert out["mean_token_loss_nats"] == pytest.approx(np.mean(nlls), rel=1e-5)
    assert out["mean_document_loss_nats"] == pytest.approx(np.mean(means), rel=1e-5)
    assert out["documents"] == 3


def test_stream_names():
    assert L.stream_of("loss") == "total"
    assert L.stream_of("loss/forget") == "forget"
    assert L.stream_of("loss_replay") == "replay"
    assert L.stream_of("forget_loss") == "forget"
    assert L.stream_of("nll/replay") == "replay"
    assert L.stream_of("learning_rate") is None
    assert L.stream_of("step") is None


def test_read_metrics_and_summary(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "loss/forget": 4.0, "loss/replay": 3.0, "lr": 0.1},
             {"step": 5, "eval/accuracy": 0.3},
             {"step": 10, "loss/forget": 2.0, "loss/replay": 2.9},
             {"step": 20, "loss/forget": 1.0, "loss/replay": 2.8}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    curves = L.read_metrics(path)
    assert curves == {"forget": ([0, 10, 20], [4.0, 2.0, 1.0]), "replay": ([0, 10, 20], [3.0, 2.9, 2.8])}
    forget = L.curve_summary(*curves["forget"])
    assert forget["relative_drop"] == pytest.approx(0.75)
    assert forget["half_drop_step"] == 10  # first loss <= (4 + 1) / 2
    replay = L.curve_summary(*curves["replay"])
    assert replay["half_drop_step"] == 10  # 2.9 <= 2.9
    assert L.curve_summary([0, 1], [1.0, 2.0])["half_drop_step"] is None
    L.plot_loss_curves(curves, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content, message", [
    ('{"step": 0, "loss": 1.0}\n{"loss": 2.0}\n', ":2: field 'step'"),
    ('{"step": 0, "loss": 1.0}\nnot json\n', ":2: bad JSON"),
    ('{"step": 0, "loss": "high"}\n', ":1: loss field"),
    ('{"step": 0, "lr": 1.0}\n', "no loss fields"),
])
def test_bad_metrics_files(tmp_path, content, message):
    path = tmp_path / "m.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SynthflawError, match=message):
        L.read_metrics(path)


def test_missing_metrics_file(tmp_path):
    with pytest.raises(SynthflawError, match="not found"):
        L.read_metrics(tmp_path / "nope.jsonl")
