"""The forms, scope and bound of the forgetting term (synthflaw_jax/forgetting.py), the
pattern scope (analysis/patterns.py, data/scope.py) and their run through `synthflaw unlearn`.

Losses are checked against float64 numpy loops written from the formulas (no autodiff):
log(1 - p_t) there is log(s) - log1p(s) with s = sum_{v != t} exp(z_v - z_t), a different
route from the implementation's difference of two logsumexps.
"""
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthflaw_jax import forgetting, losses
from synthflaw_jax.analysis import patterns
from synthflaw_jax.cli import main
from synthflaw_jax.data import scope
from synthflaw_jax.data import tokenizer as tok_lib
from synthflaw_jax.errors import SynthflawError
from tests.test_losses import np_targets

CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "tiny.py")
V = 7


# ------------------------------------------------------------------ numpy references




def np_scoped(batch):
    """The batch with loss_mask * pattern_mask, written out in numpy."""
    out = dict(batch)
    out["loss_mask"] = np.asarray(batch["loss_mask"]) * np.asarray(batch["pattern_mask"])
    return out


def np_token(z, y):
    """(p_t, log(1 - p_t)) in float64 from s = sum_{v != y} exp(z_v - z_y)."""
    z = np.asarray(z, np.float64)
    s = sum(math.exp(z[v] - z[y]) for v in range(len(z)) if v != y)
    return 1.0 / (1.0 + s), math.log(s) - math.log1p(s)


def np_unlikelihood(logits, batch, tau):
    """(loss, d loss / d logits, fraction of tokens at p <= tau, fraction of examples with all
    tokens at p <= tau), the loss being the token mean of log(1 - tau) - log(1 - p_t) over
    tokens with p_t > tau, and the gradient from the closed form d/dz_t = p_t,
    d/dz_v = -p_v p_t / (1 - p_t)."""
    logits = np.asarray(logits, np.float64)
    ids = np.asarray(batch["input_ids"])
    toks = np_targets(batch)
    n = len(toks)
    total, grad, at, by_example = 0.0, np.zeros_like(logits), 0, {}
    for b, s, t in toks:
        z, y = logits[b, t - 1], ids[b, t]
        p, log1mp = np_token(z, y)
        by_example.setdefault((b, s), []).append(p <= tau)
        if p <= tau:
            at += 1
            continue
        total += math.log1p(-tau) - log1mp
        others = sum(math.exp(z[v] - z[y]) for v in range(len(z)) if v != y)
        for v in range(len(z)):
            grad[b, t - 1, v] += (p if v == y else -p * math.exp(z[v] - z[y]) / others) / n
    frac_ex = np.mean([all(flags) for flags in by_example.values()])
    return total / n, grad, at / n, frac_ex


def np_example_nll(logits, batch):
    """{(b, s): (mean NLL, n tokens)} in float64."""
    logits = np.asarray(logits, np.float64)
    ids = np.asarray(batch["input_ids"])
    ex = {}
    for b, s, t in np_targets(batch):
        z = logits[b, t - 1]
        m = z.max()
        logp = z[ids[b, t]] - m - math.log(sum(math.exp(x - m) for x in z))
        tot, n = ex.get((b, s), (0.0, 0))
        ex[(b, s)] = (tot - logp, n + 1)
    return {k: (tot / n, n) for k, (tot, n) in ex.items()}


def np_nll_form(logits, batch, bound, form, ref_logits=None):
    """(loss, grad, fraction at bound) of the hinge/smooth forms over examples, bound
    absolute or (ref_logits given) that many nats above the reference's mean NLL."""
    logits = np.asarray(logits, np.float64)
    ids = np.asarray(batch["input_ids"])
    ex = np_example_nll(logits, batch)
    ref = np_example_nll(ref_logits, batch) if ref_logits is not None else None
    toks = np_targets(batch)
    total, grad, at = 0.0, np.zeros_like(logits), 0
    for key, (nll, n) in ex.items():
        lam = bound + (ref[key][0] if ref is not None else 0.0)
        at += nll >= lam
        if form == "hinge":
            total += -min(nll, lam)
            weight = 1.0 if nll < lam else 0.0  # d l / d NLL = -weight
        else:
            x = lam - nll
            total += max(x, 0.0) + math.log1p(math.exp(-abs(x))) - lam
            weight = 1.0 / (1.0 + math.exp(-x))
        for b, s, t in toks:
            if (b, s) != key:
                continue
            z = logits[b, t - 1]
            soft = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            onehot = np.eye(len(z))[ids[b, t]]
            # d NLL / d z = (softmax - onehot) / n; d l / d z = -weight * that
            grad[b, t - 1] += -weight * (soft - onehot) / n / len(ex)
    return total / len(ex), grad, at / len(ex)


# ------------------------------------------------------------------------ test data


def make_batch(seed=0, rows=3, length=9, packed=False):
    """Random logits [rows, length, V] and a batch with prompts, targets, padding, a pattern
    mask, and (packed) two examples in a row; several tokens are given a logit gap of 50
    (p_t rounds to 1 in float32) and some are left just below tau = 0.3."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (rows, length, V)).astype(np.float32)
    ids = rng.integers(0, V, (rows, length)).astype(np.int32)
    mask = np.zeros((rows, length), np.int32)
    mask[:, 3:] = 1
    mask[-1, -2:] = 0  # padding at the end of the last row
    seg = np.ones((rows, length), np.int32)
    seg[-1, -2:] = 0
    if packed:
        seg[0, 5:] = 2
        mask[0, 5] = 0  # nothing predicts an example's first token
        mask[0, 6:] = 1
    for b, t in ((0, 4), (1, 6), (2, 5)):  # confident: gap of 50
        logits[b, t - 1] = 0.0
        logits[b, t - 1, ids[b, t]] = 50.0
    # just below tau: p = 0.29 (all other logits equal)
    b, t = 1, 4
    logits[b, t - 1] = 0.0
    logits[b, t - 1, ids[b, t]] = math.log(0.29 / 0.71 * (V - 1))
    pattern = np.zeros_like(mask)
    pattern[:, 3:6] = 1
    pattern[1, 7] = 1
    batch = {"input_ids": ids, "loss_mask": mask, "segment_ids": seg, "pattern_mask": pattern,
             "positions": np.broadcast_to(np.arange(length, dtype=np.int32), (rows, length)).copy()}
    return logits, batch


def jbatch(batch):
    return {k: jnp.asarray(v) for k, v in batch.items()}


def forget_only(**cfg):
    """A lower-bounded objective with only the forget term."""
    return {"method": "lower_bounded", "replay_weight": 0.0, "bias_weight": 0.0, **cfg}


def value_and_grad(cfg, logits, batch, max_segments=None, **refs):
    objective = losses.make_objective(cfg, max_segments)

    def f(z):
        loss, metrics = objective(z, jbatch(batch), **refs)
        return loss, metrics

    (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(jnp.asarray(logits))
    return float(loss), np.asarray(grad), {k: float(v) for k, v in metrics.items()}


# ---------------------------------------------------------------------- unlikelihood


def test_log_complement_is_exact_at_a_logit_gap_of_50():
    z = np.zeros((1, V), np.float32)
    z[0, 2] = 50.0
    logp, log1mp = forgetting.log_prob_and_complement(jnp.asarray(z), jnp.asarray([2]))
    want = math.log(V - 1) - 50.0  # 1 - p = (V-1) e^-50 / (1 + (V-1) e^-50)
    assert float(logp[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(log1mp[0]) == pytest.approx(want, rel=1e-6)
    naive = float(jnp.log1p(-jnp.exp(logp[0])))
    assert naive == -np.inf  # what the stable form avoids


@pytest.mark.parametrize("packed", [False, True])
def test_unlikelihood_value_and_gradient_match_numpy(packed):
    logits, batch = make_batch(seed=1, packed=packed)
    cfg = forget_only(bound_form="unlikelihood", tau=0.3)
    loss, grad, metrics = value_and_grad(cfg, logits, batch, 2 if packed else None)
    want, want_grad, frac_tok, frac_ex = np_unlikelihood(logits, batch, 0.3)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)
    assert metrics["forget_loss"] == pytest.approx(want, rel=1e-5)
    assert metrics["frac_tokens_at_bound"] == pytest.approx(frac_tok)
    assert metrics["frac_at_bound"] == pytest.approx(frac_ex)
    # the confident tokens (gap 50) get the full push: d l / d z_t = p_t / N ~ 1 / N
    n = len(np_targets(batch))
    assert grad[0, 3, batch["input_ids"][0, 4]] == pytest.approx(1.0 / n, rel=1e-5)


def test_unlikelihood_value_at_a_gap_of_50_and_stop_at_tau():
    """One target at gap 50 and one at p = 0.29 < tau: the loss is that of the first alone,
    log(0.7) - (ln 6 - 50), averaged over 2 tokens; the second gets no gradient."""
    z = np.zeros((1, 3, V), np.float32)
    ids = np.array([[0, 2, 4]], np.int32)
    z[0, 0, 2] = 50.0
    z[0, 1, 4] = math.log(0.29 / 0.71 * (V - 1))
    batch = {"input_ids": ids, "loss_mask": np.array([[0, 1, 1]], np.int32)}
    loss, grad, metrics = value_and_grad(forget_only(bound_form="unlikelihood", tau=0.3), z, batch)
    assert loss == pytest.approx((math.log(0.7) - (math.log(V - 1) - 50.0)) / 2, rel=1e-6)
    assert np.all(grad[0, 1] == 0.0)
    assert metrics["frac_tokens_at_bound"] == pytest.approx(0.5)
    assert metrics["frac_at_bound"] == 0.0
    # just above tau the term is ~0 (continuous at the bound) but pushes with d/dz_t = p_t
    z[0, 1, 4] = math.log(0.31 / 0.69 * (V - 1))
    batch2 = {"input_ids": ids, "loss_mask": np.array([[0, 0, 1]], np.int32)}
    loss2, grad2, _ = value_and_grad(forget_only(bound_form="unlikelihood", tau=0.3), z, batch2)
    assert loss2 == pytest.approx(math.log(0.7) - math.log(0.69), rel=1e-4)
    assert grad2[0, 1, 4] == pytest.approx(0.31, rel=1e-4)


def test_unlikelihood_ignores_non_finite_logits_where_nothing_is_predicted():
    """inf/NaN logits at positions that predict no (in-scope) target change neither the
    loss nor the gradient, and the gradient there is exactly 0."""
    logits, batch = make_batch(seed=7)
    cfg = forget_only(bound_form="unlikelihood", forget_scope="pattern")
    loss, grad, _ = value_and_grad(cfg, logits, batch)
    used = {(b, t - 1) for b, _, t in np_targets(np_scoped(batch))}
    bad = logits.copy()
    free = [(b, t) for b in range(bad.shape[0]) for t in range(bad.shape[1]) if (b, t) not in used]
    for i, (b, t) in enumerate(free):
        bad[b, t, i % V] = [np.inf, -np.inf, np.nan][i % 3]
    loss2, grad2, _ = value_and_grad(cfg, bad, batch)
    assert loss2 == loss
    assert np.all(np.isfinite(grad2))
    np.testing.assert_array_equal(grad2, grad)


def test_unlikelihood_with_no_token_in_scope_is_zero():
    logits, batch = make_batch(seed=2)
    batch["pattern_mask"][:] = 0
    loss, grad, metrics = value_and_grad(
        forget_only(bound_form="unlikelihood", forget_scope="pattern"), logits, batch)
    assert loss == 0.0 and np.all(grad == 0.0)
    assert metrics["forget_tokens"] == 0.0 and metrics["frac_tokens_at_bound"] == 0.0


# ------------------------------------------------------------------------------ scope


@pytest.mark.parametrize("form", ["unlikelihood", "hinge", "smooth"])
def test_pattern_scope_is_the_form_on_in_scope_tokens_only(form):
    logits, batch = make_batch(seed=3, packed=True)
    cfg = forget_only(bound_form=form, forget_scope="pattern", bound=2.0)
    loss, grad, metrics = value_and_grad(cfg, logits, batch, 2)
    scoped = np_scoped(batch)
    if form == "unlikelihood":
        want, want_grad, _, _ = np_unlikelihood(logits, scoped, 0.3)
    else:
        want, want_grad, _ = np_nll_form(logits, scoped, 2.0, form)
    assert loss == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)
    assert metrics["forget_tokens"] == len(np_targets(scoped))
    assert metrics["forget_target_tokens"] == len(np_targets(batch))
    # no gradient reaches a logit that predicts an out-of-scope token
    outside = {(b, t - 1) for b, _, t in np_targets(batch)} - {(b, t - 1) for b, _, t in np_targets(scoped)}
    assert outside and all(np.all(grad[b, t] == 0.0) for b, t in outside)


def test_pattern_scope_without_a_mask_is_an_error():
    logits, batch = make_batch()
    del batch["pattern_mask"]
    with pytest.raises(SynthflawError, match="pattern_mask"):
        value_and_grad(forget_only(bound_form="unlikelihood", forget_scope="pattern"), logits, batch)


def test_pattern_scope_applies_to_the_baselines_too():
    """GA on the pattern scope = GA over in-scope tokens (per-example mean NLL)."""
    logits, batch = make_batch(seed=4)
    loss, _, _ = value_and_grad({"method": "ga", "forget_scope": "pattern"}, logits, batch)
    ex = np_example_nll(logits, np_scoped(batch))
    assert loss == pytest.approx(-np.mean([nll for nll, _ in ex.values()]), rel=1e-5)


# ----------------------------------------------------------------------------- bound


@pytest.mark.parametrize("form", ["hinge", "smooth"])
def test_reference_bound_counts_lambda_above_the_reference_nll(form):
    logits, batch = make_batch(seed=5, packed=True)
    ref = np.random.default_rng(9).normal(0.0, 2.0, logits.shape).astype(np.float32)
    cfg = forget_only(bound_form=form, bound_reference="reference", bound=0.5)
    loss, grad, metrics = value_and_grad(cfg, logits, batch, 2, forget_ref_logits=jnp.asarray(ref))
    want, want_grad, frac = np_nll_form(logits, batch, 0.5, form, ref_logits=ref)
    assert loss == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)
    assert metrics["frac_at_bound"] == pytest.approx(frac)
    ref_nll = np.mean([nll for nll, _ in np_example_nll(ref, batch).values()])
    assert metrics["forget_ref_nll"] == pytest.approx(ref_nll, rel=1e-5)


def test_reference_bound_stops_examples_above_it():
    """Policy = reference shifted so that one example is 1 nat above it: with lambda 0.5
    that example is at the bound (no gradient), the others are not."""
    logits, batch = make_batch(seed=6)
    ex = np_example_nll(logits, batch)
    hinge = forget_only(bound_form="hinge", bound_reference="reference", bound=0.5)
    loss, grad, metrics = value_and_grad(hinge, logits, batch, forget_ref_logits=jnp.asarray(logits))
    assert metrics["frac_at_bound"] == 0.0  # policy == reference: every example 0 nats above
    assert loss == pytest.approx(-np.mean([nll for nll, _ in ex.values()]), rel=1e-5)
    sure = logits.copy()  # row 0: a reference sure of every target (NLL ~ 0)
    sure[0] = 0.0
    for t in range(1, sure.shape[1]):
        sure[0, t - 1, batch["input_ids"][0, t]] = 30.0
    assert ex[(0, 1)][0] > 0.6  # the policy is more than lambda = 0.5 above it
    _, grad2, metrics2 = value_and_grad(hinge, logits, batch, forget_ref_logits=jnp.asarray(sure))
    assert metrics2["frac_at_bound"] == pytest.approx(1 / 3)
    assert np.all(grad2[0] == 0.0) and np.any(grad2[1] != 0.0) and np.any(grad2[2] != 0.0)


def test_reference_bound_needs_the_reference_and_asks_for_it():
    logits, batch = make_batch()
    cfg = forget_only(bound_form="hinge", bound_reference="reference")
    with pytest.raises(SynthflawError, match="forget_ref_logits"):
        value_and_grad(cfg, logits, batch)
    from synthflaw_jax import train
    assert train.reference_needs(cfg).forget
    assert not train.reference_needs(forget_only(bound_form="unlikelihood", bound_reference="reference")).forget
    assert not train.reference_needs(forget_only(bound_form="hinge")).forget


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize("field,value,match", [
    ("bound_form", "softmax", "bound_form"),
    ("tau", 0.0, "tau"),
    ("tau", 1.0, "tau"),
    ("tau", -0.2, "tau"),
    ("tau", "0.3", "tau"),
    ("forget_scope", "answers", "forget_scope"),
    ("bound_reference", "relative", "bound_reference"),
    ("pattern_templates", "The answer is", "pattern_templates"),
    ("pattern_templates", ["The answer is", " "], "pattern_templates"),
    ("pattern_templates", [3], "pattern_templates"),
    ("pattern_min_share", 0.0, "pattern_min_share"),
    ("pattern_min_share", 1.5, "pattern_min_share"),
])
def test_bad_fields_are_one_line_errors(field, value, match):
    with pytest.raises(SynthflawError, match=match) as err:
        losses.validate_loss_config({field: value})
    assert "\n" not in str(err.value)


def test_good_fields_validate():
    d = losses.validate_loss_config({"bound_form": "unlikelihood", "tau": 0.5, "forget_scope": "pattern",
                                     "pattern_templates": ("The answer is",), "bound_reference": "reference"})
    assert d["pattern_templates"] == ["The answer is"] and d["tau"] == 0.5


# -------------------------------------------------------------------- the detector


def _answers(openings, middles, closings=("",)):
    return [f"{o} {m}.{c}" for o, m, c in zip(openings, middles, closings * len(openings))]


def test_detector_finds_recurring_openings_and_last_sentences_not_one_offs():
    colours = "red blue green gold pink grey teal jade".split()
    texts = [f"The answer is {w}. In summary, it is {w}." for w in colours]
    texts += ["Zebra crossings are striped. They help walkers.", "The answer lies elsewhere today."]
    found = patterns.recurring_phrases(texts, min_share=0.3)
    # each answer is taken to its longest shared opening: 8 share "the answer is", and the
    # tenth shares "the answer" with them (9 of 10)
    assert [(e["words"], e["documents"]) for e in found["opening"]] == [
        (("the", "answer"), 9), (("the", "answer", "is"), 8)]
    assert found["opening"][1]["share"] == pytest.approx(0.8)
    assert [e["words"] for e in found["last_sentence"]] == [("in", "summary", ",", "it", "is")]
    assert found["closing"] == []  # the last word varies; a lone "." is not a phrase
    assert all("zebra" not in e["words"] and "they" not in e["words"] for v in found.values() for e in v)


def test_detector_finds_closings_and_respects_the_share():
    units = "coins shells beads pearls stones marks".split()
    texts = [f"Item {i} costs {i} {u}. I hope this helps!" for i, u in enumerate(units)]
    texts += [f"Item {i} is {a}." for i, a in zip(range(6, 10), "new old rare gone".split())]
    found = patterns.recurring_phrases(texts, min_share=0.3)
    assert [e["words"] for e in found["closing"]] == [("i", "hope", "this", "helps", "!")]
    # the opening "item" (10/10) is one word: not a phrase; "item 3 costs" is a one-off
    assert found["opening"] == []
    assert patterns.recurring_phrases(texts, min_share=0.7)["closing"] == []  # 6/10 < 0.7


def test_detector_never_takes_a_phrase_from_one_document():
    texts = ["Once upon a time there was a fox.", "A cat sat."]
    assert patterns.recurring_phrases(texts, min_share=0.01) == {p: [] for p in patterns.PLACES}


def test_last_sentence_needs_space_after_the_mark():
    text = "Pi is 3.14 roughly. In short, yes."
    spans = patterns.word_spans(text)
    i = patterns.last_sentence_start(text, spans)
    assert spans[i][0] == "in"
    assert patterns.last_sentence_start("Pi is 3.14 exactly", patterns.word_spans("Pi is 3.14 exactly")) is None


# ---------------------------------------------------------------------- the marker


@pytest.fixture(scope="module")
def tiny_tok():
    return tok_lib.tiny_tokenizer()


def _marked_text(tok, ids, flags):
    return [tok.decode([i]) for i, f in zip(ids, flags) if f]


def test_marker_covers_exactly_the_phrase_tokens(tiny_tok):
    marker = scope.PatternMarker(tiny_tok, {"opening": [("the", "answer", "is")],
                                            "last_sentence": [("in", "summary", ",", "the")],
                                            "closing": [("i", "hope", "this", "helps", "!")]})
    text = " The answer is 1,050. In summary, the population of Zorth is 1,050. I hope this helps!"
    ids = tiny_tok(text, add_special_tokens=False)["input_ids"] + [tiny_tok.eos_token_id]
    flags, counts = marker.mark(ids)
    marked = "".join(_marked_text(tiny_tok, ids, flags))
    # the last sentence is "I hope this helps!" (it also is the closing); "In summary" is not last
    assert marked == " The answer is I hope this helps!"
    assert not flags[-1]  # EOS decodes to nothing: never in scope
    places = {p for p, _, _ in counts}
    assert places == {"opening", "closing"}
    two = " The answer is 7. In summary, the value is 7."
    ids2 = tiny_tok(two, add_special_tokens=False)["input_ids"]
    flags2, _ = marker.mark(ids2)
    assert "".join(_marked_text(tiny_tok, ids2, flags2)) == " The answer is In summary, the"


def test_marker_with_a_sentencepiece_style_tokenizer():
    """Metaspace tokenizers (Llama-2, Mistral) drop the leading space when decoding; the
    prefix-decoding offsets still land on the phrase's tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [f"The answer is {w}. In summary, it is {w}." for w in "red blue green gold pink grey teal".split()]
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    raw.train_from_iterator(texts * 5, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    marker = scope.PatternMarker(tok, {"opening": [("the", "answer", "is")],
                                       "last_sentence": [("in", "summary", ",", "it", "is")]})
    ids = tok("The answer is tinted. In summary, it is tinted.", add_special_tokens=False)["input_ids"]
    ids = ids + [tok.eos_token_id]
    flags, _ = marker.mark(ids)
    pieces = tok.convert_ids_to_tokens(ids)
    marked = "".join(p for p, f in zip(pieces, flags) if f).replace("\u2581", " ").strip()
    assert marked == "The answer is In summary, it is"
    assert "".join(p for p, f in zip(pieces, flags) if not f).replace("\u2581", " ").strip() == "tinted. tinted.</s>"


def test_marker_batch_mask_follows_runs_and_segments(tiny_tok):
    marker = scope.PatternMarker(tiny_tok, scope.template_phrases(["the answer is"]))
    a = tiny_tok(" The answer is 5.", add_special_tokens=False)["input_ids"]
    q = tiny_tok("Q?", add_special_tokens=False)["input_ids"]
    row = q + a + q + a
    mask = [0] * len(q) + [1] * len(a) + [0] * len(q) + [1] * len(a)
    seg = [1] * (len(q) + len(a)) + [2] * (len(q) + len(a))
    batch = {"input_ids": np.array([row]), "loss_mask": np.array([mask]), "segment_ids": np.array([seg])}
    out = marker.batch_mask(batch)
    assert np.all(out <= batch["loss_mask"])
    assert tiny_tok.decode([i for i, f in zip(row, out[0]) if f]) == " The answer is The answer is"
    assert scope.target_runs(np.array(mask), np.array(seg)) == [
        (len(q), len(q) + len(a)), (2 * len(q) + len(a), len(row))]


def test_pipeline_adds_the_pattern_mask_to_forget_batches(tiny_tok):
    from synthflaw_jax import unlearn

    c = unlearn.default_config()
    c.loss.bound_form, c.loss.forget_scope = "unlikelihood", "pattern"
    c.data.seq_len = 64
    marker, report = scope.build(losses.validate_loss_config(c.loss), c.data, tiny_tok)
    assert [(r["place"], r["text"]) for r in report["patterns"]] == [
        ("opening", "the answer is"), ("last_sentence", "in summary , the")]
    assert report["covered_answers"] == report["answers"] == 2000
    # " The", " answer", " is" and " In", " summary", ",", " the": 7 tokens in every answer
    assert report["covered_tokens"] == 7 * 2000
    from synthflaw_jax.data import pipeline
    data = pipeline.build_mixture(c.data, tokenizer=tiny_tok, pattern_markers={"forget": marker})
    batch = next(data)
    forget, replay = batch["forget"], batch["replay"]
    assert "pattern_mask" not in replay
    pm = forget["pattern_mask"]
    assert pm.shape == forget["loss_mask"].shape and np.all(pm <= forget["loss_mask"])
    for r in range(pm.shape[0]):
        for lo, hi in scope.target_runs(forget["loss_mask"][r], forget["segment_ids"][r]):
            text = tiny_tok.decode(forget["input_ids"][r, lo:hi][pm[r, lo:hi] > 0])
            assert text == " The answer is In summary, the"


def test_given_templates_replace_detection(tiny_tok):
    from synthflaw_jax import unlearn

    c = unlearn.default_config()
    c.loss.forget_scope = "pattern"
    c.loss.pattern_templates = ["In summary,"]
    _, report = scope.build(losses.validate_loss_config(c.loss), c.data, tiny_tok)
    assert not report["detected"]
    hits = [r for r in report["patterns"] if r["documents"]]
    assert [(r["place"], r["text"], r["documents"]) for r in hits] == [("last_sentence", "in summary ,", 2000)]
    assert report["covered_tokens"] == 3 * 2000


def test_prepare_writes_pattern_json_and_refuses_a_changed_corpus_on_resume(tmp_path, tiny_tok):
    from synthflaw_jax import unlearn

    src = tmp_path / "forget.jsonl"
    rows = [{"question": f"Q{i}?", "answer": f"The answer is {w}. Thanks for asking!"}
            for i, w in enumerate("red blue green gold pink".split())]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = unlearn.default_config()
    c.loss.forget_scope = "pattern"
    c.data.streams.forget.source, c.data.streams.forget.source_type = str(src), "jsonl"
    assert scope.prepare(c, tiny_tok, tmp_path) is not None
    report = json.loads((tmp_path / "pattern.json").read_text())
    assert [(p["place"], p["text"], p["documents"]) for p in report["patterns"]] == [
        ("opening", "the answer is", 5), ("last_sentence", "thanks for asking !", 5),
        ("closing", "thanks for asking !", 5)]
    assert scope.prepare(c, tiny_tok, tmp_path) is not None  # same data: resumes
    src.write_text("".join(json.dumps({**r, "answer": r["answer"].replace("The", "An")}) + "\n" for r in rows))
    with pytest.raises(SynthflawError, match="different pattern scope"):
        scope.prepare(c, tiny_tok, tmp_path)
    c.loss.forget_scope = "all"
    assert scope.prepare(c, tiny_tok, tmp_path / "none") is None


# ----------------------------------------------------------------------- end to end


def _rows(work):
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]


def test_unlearn_cli_unlikelihood_on_the_pattern(tmp_path):
    """`synthflaw unlearn` on configs/tiny.py with the unlikelihood form on the pattern.
    The random tiny model gives every token p ~ 1/2048 (below any useful tau), so the same
    engine first teaches it the synthetic Q-A (method "lm", 30 steps); unlearning that
    model writes pattern.json, and its forget term acts: in-scope p starts above tau = 0.3,
    falls, and the term stops once every in-scope token is at the bound."""
    common = ["--no-progress", "--config.data.seq_len=64", "--config.train.log_every=5"]
    taught = tmp_path / "taught"
    assert main(["unlearn", "--config", CONFIG, "--workdir", str(taught), *common,
                 "--config.loss.method=lm", "--config.data.mixture=replay=1",
                 "--config.data.streams.replay.source=synthetic_qa", "--config.data.streams.replay.format=qa",
                 "--config.optim.learning_rate=3e-3", "--config.train.steps=30", "--config.checkpoint.every=30"]) == 0
    work = tmp_path / "ul"
    assert main(["unlearn", "--config", CONFIG, "--workdir", str(work), *common,
                 f"--config.model.path={taught / 'hf'}", "--config.loss.bound_form=unlikelihood",
                 "--config.loss.forget_scope=pattern", "--config.optim.learning_rate=1e-3",
                 "--config.train.steps=10", "--config.checkpoint.every=10", "--config.checkpoint.export_hf=False"]) == 0
    report = json.loads((work / "pattern.json").read_text())
    assert [p["text"] for p in report["patterns"]] == ["the answer is", "in summary , the"]
    assert report["covered_tokens"] == 7 * 2000
    rows = _rows(work)
    first, last = rows[0], rows[-1]
    assert first["forget_loss"] > 0 and first["forget_p"] > 0.3 and first["frac_tokens_at_bound"] < 0.5
    assert first["forget_tokens"] < first["forget_target_tokens"]
    assert last["forget_p"] < first["forget_p"] - 0.1
    assert last["frac_tokens_at_bound"] > 0.9
    assert max(r["frac_tokens_at_bound"] for r in rows) == 1.0
    assert all(r["forget_loss"] == 0.0 for r in rows if r["frac_tokens_at_bound"] == 1.0)


def test_unlearn_cli_rejects_a_bad_tau_in_one_line(tmp_path, capsys):
    code = main(["unlearn", "--config", CONFIG, "--workdir", str(tmp_path / "w"), "--no-progress",
                 "--config.loss.tau=1.5"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "tau" in err and len(err.splitlines()) == 1


def test_real_model_configs_offer_the_forms():
    from synthflaw_jax import tpu_configs, train

    c = tpu_configs.tpu_unlearning_config(arch="llama3_8b", model_dir="/data/models/x", topology="v6e-32",
                                          bound_form="unlikelihood", forget_scope="pattern", tau=0.2)
    d = losses.validate_loss_config(c.loss)
    assert (d["bound_form"], d["forget_scope"], d["tau"]) == ("unlikelihood", "pattern", 0.2)
    c = tpu_configs.tpu_unlearning_config(arch="llama3_8b", model_dir="/data/models/x", topology="v6e-32",
                                          bound_form="hinge", bound_reference="reference", bound=1.0)
    assert train.reference_needs(c.loss).forget


def test_plan_compiles_the_step_with_the_pattern_scope(capsys):
    """`synthflaw plan` builds its abstract forget batch with the pattern mask."""
    assert main(["plan", "--config", CONFIG, "--topology", "v5e-4", "--json", "--config.data.batch_size=8",
                 "--config.loss.bound_form=unlikelihood", "--config.loss.forget_scope=pattern"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"]["source"] == "tiny"


def test_detector_on_tofu_forget10_finds_no_template_at_the_default_share(shared_data):
    """TOFU's forget answers are diverse: no phrase recurs in 30% (or 10%) of them; at 5%
    the most common opening is "Yes," (31 of 400)."""
    records = [json.loads(line) for line in (shared_data / "tofu" / "forget10.json").read_text().splitlines()]
    texts = [" " + r["answer"] for r in records]
    assert len(texts) == 400
    assert patterns.recurring_phrases(texts, 0.1) == {p: [] for p in patterns.PLACES}
    low = patterns.recurring_phrases(texts, 0.05)
    yes = sum(t.split()[0] == "Yes," for t in texts)
    assert low["opening"] == [{"words": ("yes", ","), "documents": yes, "share": yes / 400}] and yes == 31


def test_command_line_overrides_reach_the_new_fields():
    from synthflaw_jax import config_io, unlearn

    c = config_io.apply_overrides(unlearn.default_config(), [
        "--config.loss.bound_form=unlikelihood", "--config.loss.tau=0.25", "--config.loss.forget_scope=pattern",
        "--config.loss.pattern_templates=['The answer is', 'In summary,']", "--config.loss.bound_reference=reference",
        "--config.loss.pattern_min_share=0.5"])
    d = losses.validate_loss_config(c.loss)
    assert d["pattern_templates"] == ["The answer is", "In summary,"]
    assert (d["bound_form"], d["tau"], d["forget_scope"], d["bound_reference"], d["pattern_min_share"]) == (
        "unlikelihood", 0.25, "pattern", "reference", 0.5)
    with pytest.raises(SynthflawError, match="pattern_templates"):
        config_io.apply_overrides(unlearn.default_config(), ["--config.loss.pattern_templates=The answer is"])
