"""Output distribution shift on hand-made logits and on fake models."""
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from synthflaw_jax.analysis import shift as S
from synthflaw_jax.errors import SynthflawError
from tests.test_analysis_fakes import FakeModel, make_tokenizer


def test_identical_logits_give_zero_divergence_and_full_overlap():
    logits = np.random.default_rng(0).normal(size=(2, 5, 7))
    out = S.logit_shift(logits, logits.copy(), k=3)
    assert out["kl_a_b_bits"] == pytest.approx(0.0, abs=1e-12)
    assert out["kl_b_a_bits"] == pytest.approx(0.0, abs=1e-12)
    assert out["js_bits"] == pytest.approx(0.0, abs=1e-12)
    assert out["topk_overlap"] == 1.0
    assert out["positions"] == 10


def test_divergences_against_scipy_on_hand_made_distributions():
    p = np.array([0.5, 0.25, 0.25])
    q = np.array([0.25, 0.25, 0.5])
    r = np.array([0.7, 0.2, 0.1])
    # logits are log-probs plus an arbitrary per-position constant
    la = np.log(np.stack([p, r]))[None] + np.array([[[3.0], [-1.0]]])
    lb = np.log(np.stack([q, q]))[None]
    kl_ab, kl_ba, js = S.position_divergences(la, lb)
    np.testing.assert_allclose(kl_ab, [entropy(p, q, base=2), entropy(r, q, base=2)])
    np.testing.assert_allclose(kl_ba, [entropy(q, p, base=2), entropy(q, r, base=2)])
    np.testing.assert_allclose(js, [jensenshannon(p, q, base=2) ** 2, jensenshannon(r, q, base=2) ** 2])
    assert kl_ab[0] == pytest.approx(0.25)  # 0.5*log2(2) + 0.25*0 + 0.25*log2(0.5)


def test_mask_selects_positions():
    p, q = np.log([0.9, 0.1]), np.log([0.1, 0.9])
    la = np.array([[p, p]])
    lb = np.array([[p, q]])
    assert S.logit_shift(la, lb, mask=np.array([[1, 0]]), k=1)["kl_a_b_bits"] == pytest.approx(0.0, abs=1e-12)
    assert S.logit_shift(la, lb, mask=np.array([[0, 1]]), k=1)["kl_a_b_bits"] == pytest.approx(
        entropy([0.9, 0.1], [0.1, 0.9], base=2))


def test_topk_overlap_by_hand():
    a = np.array([[[4.0, 3.0, 2.0, 1.0]]])  # top-2 {0, 1}
    b = np.array([[[1.0, 3.0, 4.0, 2.0]]])  # top-2 {2, 1}
    assert S.topk_sets_overlap(a, b, k=2).tolist() == [0.5]
    assert S.topk_sets_overlap(a, b, k=4).tolist() == [1.0]
    assert S.topk_sets_overlap(a, b, k=1).tolist() == [0.0]


def test_shape_mismatch_is_an_error():
    with pytest.raises(SynthflawError, match="differ in shape"):
        S.logit_shift(np.zeros((1, 2, 3)), np.zeros((1, 2, 4)))


def test_template_share_counts_outputs_starting_with_the_template():
    outputs = {"p1": "The author in question is X.", "p2": "the  Author in", "p3": "Another thing", "p4": "the author"}
    calls = []

    def generate(prompts, max_new_tokens):
        calls.append((list(prompts), max_new_tokens))
        return [outputs[p] for p in prompts]

    out = S.template_share(generate, list(outputs), "the author in", max_new_tokens=7, batch_size=3, progress=False)
    assert out["share"] == pytest.approx(2 / 4)
    assert out["count"] == 2 and out["prompts"] == 4
    assert calls == [(["p1", "p2", "p3"], 7), (["p4"], 7)]


def test_compare_models_same_model_and_different_models():
    tok = make_tokenizer()
    a = FakeModel(vocab_size=len(tok), seed=0, tokenizer=tok, reply=lambda p: "the author in question")
    b = FakeModel(vocab_size=len(tok), seed=1, tokenizer=tok, reply=lambda p: "books about love")
    prompts = ["the author", "a writer who was born", "love war"]
    same = S.compare_models(a, a, tok, prompts, template="the author in", k=5, batch_size=2, progress=False)
    assert same["kl_a_b_bits"] == pytest.approx(0.0, abs=1e-9)
    assert same["js_bits"] == pytest.approx(0.0, abs=1e-9)
    assert same["topk_overlap"] == 1.0
    assert same["positions"] == 2 + 5 + 2
    diff = S.compare_models(a, b, tok, prompts, template="the author in", k=5, batch_size=2, progress=False)
    assert diff["kl_a_b_bits"] > 0.01 and 0 < diff["js_bits"] <= 1
    assert diff["template_share_a"]["share"] == 1.0
    assert diff["template_share_b"]["share"] == 0.0
    # the mean over positions equals a direct computation on each unpadded prompt
    direct = [S.position_divergences(a.logits(np.array([ids])), b.logits(np.array([ids])))[2]
              for ids in tok(prompts)["input_ids"]]
    assert diff["js_bits"] == pytest.approx(np.concatenate(direct).mean(), rel=1e-5)


def test_compare_models_rejects_mismatched_vocabularies():
    tok = make_tokenizer()
    a = FakeModel(vocab_size=len(tok), tokenizer=tok)
    b = FakeModel(vocab_size=len(tok) + 5, tokenizer=tok)
    with pytest.raises(SynthflawError, match="vocab sizes differ"):
        S.compare_models(a, b, tok, ["the author"], progress=False)
    small = FakeModel(vocab_size=len(tok) - 1)
    with pytest.raises(SynthflawError, match="model B: tokenizer has"):
        S.compare_models(a, small, tok, ["the author"], progress=False)


def test_models_without_generate_skip_only_the_template_share():
    tok = make_tokenizer()
    a = FakeModel(vocab_size=len(tok), tokenizer=tok)
    plain = type("NoGenerate", (), {"config": a.config, "logits": staticmethod(a.logits)})()  # no generate()
    out = S.compare_models(a, plain, tok, ["the author"], template="the author", progress=False)
    assert out["js_bits"] == pytest.approx(0.0, abs=1e-9)
    assert "template_share_a" not in out and "template_share_b" not in out
