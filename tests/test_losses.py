"""synthflaw_jax.losses against independent numpy references (loops, float64, no autodiff)
and hand-computed tiny cases."""
import inspect
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from synthflaw_jax import losses as L
from synthflaw_jax.errors import SynthflawError

LN = math.log


# ------------------------------------------------------------------ numpy references


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    out = np.empty_like(z)
    for idx in np.ndindex(z.shape[:-1]):
        row = z[idx]
        m = row.max()
        out[idx] = row - m - math.log(sum(math.exp(x - m) for x in row))
    return out


def np_targets(batch, key="loss_mask"):
    """[(b, example key, t)] for every target token t (predicted from position t-1); `key`
    names the mask that marks targets."""
    ids, mask = np.asarray(batch["input_ids"]), np.asarray(batch[key])
    seg = batch.get("segment_ids")
    seg = None if seg is None else np.asarray(seg)
    out = []
    for b in range(ids.shape[0]):
        for t in range(1, ids.shape[1]):
            if mask[b, t] == 0:
                continue
            if seg is not None and (seg[b, t] == 0 or seg[b, t] != seg[b, t - 1]):
                continue
            out.append((b, 0 if seg is None else int(seg[b, t]), t))
    return out


def np_examples(logits, batch, packed):
    """{(b, s): (sum log-prob, n tokens)} over examples that have target tokens."""
    lsm = np_log_softmax(logits)
    ids = np.asarray(batch["input_ids"])
    ex = {}
    for b, s, t in np_targets(batch):
        key = (b, s if packed else 0)
        lp, n = ex.get(key, (0.0, 0))
        ex[key] = (lp + lsm[b, t - 1, ids[b, t]], n + 1)
    return ex


def np_kl_sum(logits, ref, positions):
    lt, lr = np_log_softmax(logits), np_log_softmax(ref)
    total = 0.0
    for b, t in positions:  # t = the predicting position
        total += sum(
            math.exp(lr[b, t, v]) * (lr[b, t, v] - lt[b, t, v])
            for v in range(lt.shape[-1])
            if lr[b, t, v] > -np.inf
        )
    return total


def np_softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def np_log_sigmoid(x):
    return -np_softplus(-x)


def np_objective(cfg, fl, fb, rl=None, rb=None, f_ref=None, r_ref=None, packed=False):
    """The whole objective, written from the formulas in paper.md."""
    c = dict(L.default_loss_config().to_dict(), **cfg)
    ex = np_examples(fl, fb, packed)
    nlls = [-lp / n for lp, n in ex.values()]
    avg = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    lam, beta, gamma, m = c["bound"], c["beta"], c["gamma"], c["method"]
    if m == "lower_bounded":
        if c["bound_form"] == "hinge":
            lf = avg([-min(x, lam) for x in nlls])
        else:
            lf = avg([np_softplus(lam - x) - lam for x in nlls])
    elif m in ("ga", "graddiff", "kl"):
        lf = avg([-x for x in nlls])
    elif m == "npo":
        ref_ex = np_examples(f_ref, fb, packed)
        lf = avg([-(2 / beta) * np_log_sigmoid(-beta * (lp - ref_ex[k][0])) for k, (lp, n) in ex.items()])
    else:
        lf = avg([-(2 / beta) * np_log_sigmoid(-(beta / n) * lp - gamma) for lp, n in ex.values()])
    total = c["forget_weight"] * lf
    if m in ("lower_bounded", "graddiff", "npo", "simnpo") and c["replay_weight"] > 0:
        r = np_targets(rb)
        lsm = np_log_softmax(rl)
        ids = np.asarray(rb["input_ids"])
        total += c["replay_weight"] * -sum(lsm[b, t - 1, ids[b, t]] for b, _, t in r) / len(r)
    if m in ("lower_bounded", "kl") and c["bias_weight"] > 0:
        pos = [(b, t - 1) for b, _, t in np_targets(rb)]
        total += c["bias_weight"] * np_kl_sum(rl, r_ref, pos) / len(pos)
    return total


def np_fd_grad(f, x, eps=1e-5):
    """Central finite differences of a float64 numpy function."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (f(xp) - f(xm)) / (2 * eps)
    return g


# ------------------------------------------------------------------------- fixtures


def random_batch(rng, B, T, V, packed=False, empty_row=None):
    ids = rng.integers(0, V, size=(B, T)).astype(np.int32)
    mask = (rng.random((B, T)) < 0.6).astype(np.int32)
    if packed:
        seg = np.zeros((B, T), np.int32)
        for b in range(B):
            cuts = sorted(rng.choice(np.arange(2, T - 1), size=2, replace=False))
            seg[b, : cuts[0]] = 1
            seg[b, cuts[0] : cuts[1]] = 2
            seg[b, cuts[1] : T - 1] = 3  # last position is padding
    else:
        seg = np.ones((B, T), np.int32)
        seg[:, -1] = 0
    if empty_row is not None:
        mask[empty_row] = 0
    mask = mask * (seg > 0)
    return {
        "input_ids": ids,
        "loss_mask": mask,
        "segment_ids": seg,
        "positions": np.tile(np.arange(T, dtype=np.int32), (B, 1)),
    }


def jbatch(b):
    return {k: jnp.asarray(v) for k, v in b.items()}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --------------------------------------------------------------------- hand-computed
# Vocab {0, 1}. Row: tokens [0, 1, 0], targets tokens 1 and 2.
# logits at pos 0: [0, ln 3] -> p = [1/4, 3/4]; at pos 1: [0, 0] -> p = [1/2, 1/2].
# log p(token1=1) = ln(3/4), log p(token2=0) = ln(1/2).
HAND_BATCH = {
    "input_ids": np.array([[0, 1, 0]], np.int32),
    "loss_mask": np.array([[0, 1, 1]], np.int32),
    "segment_ids": np.array([[1, 1, 1]], np.int32),
    "positions": np.array([[0, 1, 2]], np.int32),
}
HAND_LOGITS = np.array([[[0.0, LN(3)], [0.0, 0.0], [5.0, -5.0]]], np.float32)
HAND_NLL_SUM = LN(4 / 3) + LN(2)


def test_hand_token_log_probs_and_nll():
    lp = L.token_log_probs(jnp.asarray(HAND_LOGITS[:, :2]), jnp.array([[1, 0]]))
    np.testing.assert_allclose(lp, [[LN(3 / 4), LN(1 / 2)]], rtol=1e-6)
    st = L.example_nll(jnp.asarray(HAND_LOGITS), jbatch(HAND_BATCH))
    np.testing.assert_allclose(st.total, [[HAND_NLL_SUM]], rtol=1e-6)
    np.testing.assert_allclose(st.count, [[2.0]])
    np.testing.assert_allclose(st.mean, [[HAND_NLL_SUM / 2]], rtol=1e-6)
    r, n = L.replay_loss(jnp.asarray(HAND_LOGITS), jbatch(HAND_BATCH))
    np.testing.assert_allclose([r, n], [HAND_NLL_SUM / 2, 2.0], rtol=1e-6)
    one = dict(HAND_BATCH, loss_mask=np.array([[0, 0, 1]], np.int32))  # one target token
    r, n = L.replay_loss(jnp.asarray(HAND_LOGITS), jbatch(one))
    np.testing.assert_allclose([r, n], [LN(2), 1.0], rtol=1e-6)


def test_hand_bounded_kl_npo_simnpo():
    nll = jnp.array([[0.5, 1.0, 2.0]])
    valid = jnp.array([[True, True, True]])
    loss, frac = L.lower_bounded_forget_loss(nll, valid, 1.0, "hinge")
    np.testing.assert_allclose(loss, -(0.5 + 1.0 + 1.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(frac, 2 / 3, rtol=1e-6)
    loss, frac = L.lower_bounded_forget_loss(nll, valid, 1.0, "smooth")
    want = sum(LN(1 + math.exp(1.0 - x)) - 1.0 for x in (0.5, 1.0, 2.0)) / 3
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_allclose(frac, 2 / 3, rtol=1e-6)
    # KL([1/2,1/2] || [1/4,3/4]) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3)
    kl = L.token_kl(jnp.array([0.0, LN(3)]), jnp.array([0.0, 0.0]))
    np.testing.assert_allclose(kl, 0.5 * LN(4 / 3), rtol=1e-6)
    # NPO, beta 1: logp_theta = ln 1/4, logp_ref = ln 1/2: -2 log sigmoid(ln 2) = 2 ln(3/2)
    npo = L.npo_per_example(jnp.array(LN(0.25)), jnp.array(LN(0.5)), 1.0)
    np.testing.assert_allclose(npo, 2 * LN(1.5), rtol=1e-6)
    # SimNPO, beta 1, gamma 0, |y| = 2, logp = 2 ln 1/2: -2 log sigmoid(ln 2) = 2 ln(3/2)
    sim = L.simnpo_per_example(jnp.array(2 * LN(0.5)), jnp.array(2.0), 1.0, 0.0)
    np.testing.assert_allclose(sim, 2 * LN(1.5), rtol=1e-6)


def test_shift_masks_segment_boundaries_and_padding():
    ids = np.array([[5, 6, 7, 8, 9, 0]], np.int32)
    mask = np.array([[1, 1, 1, 1, 1, 1]], np.int32)
    seg = np.array([[1, 1, 2, 2, 2, 0]], np.int32)
    targets, w, s = L.shift_targets(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(seg))
    np.testing.assert_array_equal(targets, [[6, 7, 8, 9, 0]])
    # token 7 starts segment 2 (not predicted from segment 1); last token is padding
    np.testing.assert_array_equal(w, [[1, 0, 1, 1, 0]])
    np.testing.assert_array_equal(s, [[1, 2, 2, 2, 0]])
    assert w.dtype == jnp.float32


# ------------------------------------------------------------------- random vs numpy


def test_token_log_probs_and_log_softmax_random(rng):
    z = rng.normal(size=(2, 5, 7)).astype(np.float32) * 3
    t = rng.integers(0, 7, size=(2, 5))
    ref = np_log_softmax(z)
    np.testing.assert_allclose(L.log_softmax_f32(jnp.asarray(z)), ref, atol=1e-5)
    got = L.token_log_probs(jnp.asarray(z), jnp.asarray(t))
    want = np.take_along_axis(ref, t[..., None], -1)[..., 0]
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("packed", [False, True])
def test_example_nll_random(rng, packed):
    B, T, V = 3, 10, 6
    b = random_batch(rng, B, T, V, packed=packed, empty_row=1)
    z = rng.normal(size=(B, T, V)).astype(np.float32)
    S = 3 if packed else None
    st = L.example_nll(jnp.asarray(z), jbatch(b), S)
    assert st.total.shape == (B, S or 1)
    ex = np_examples(z, b, packed)
    for bi in range(B):
        for si in range(S or 1):
            key = (bi, si + 1 if packed else 0)
            if key in ex:
                lp, n = ex[key]
                assert bool(st.valid[bi, si])
                np.testing.assert_allclose(st.total[bi, si], -lp, rtol=1e-5)
                np.testing.assert_allclose(st.count[bi, si], n)
                np.testing.assert_allclose(st.mean[bi, si], -lp / n, rtol=1e-5)
            else:
                assert not bool(st.valid[bi, si]) and float(st.mean[bi, si]) == 0.0
    assert not bool(st.valid[1].any())  # the row without targets
    assert np.isfinite(np.asarray(st.mean)).all()


def test_replay_and_kl_random(rng):
    B, T, V = 2, 8, 5
    b = random_batch(rng, B, T, V)
    z = rng.normal(size=(B, T, V)).astype(np.float32)
    ref = rng.normal(size=(B, T, V)).astype(np.float32)
    lsm = np_log_softmax(z)
    tg = np_targets(b)
    want_nll = -sum(lsm[bi, t - 1, b["input_ids"][bi, t]] for bi, _, t in tg) / len(tg)
    got, n = L.replay_loss(jnp.asarray(z), jbatch(b))
    np.testing.assert_allclose(got, want_nll, rtol=1e-5)
    assert float(n) == len(tg)
    want_kl = np_kl_sum(z, ref, [(bi, t - 1) for bi, _, t in tg]) / len(tg)
    got_kl, _ = L.bias_kl_loss(jnp.asarray(z), jnp.asarray(ref), jbatch(b))
    np.testing.assert_allclose(got_kl, want_kl, rtol=1e-5)
    # reference given as log-probs gives the same KL
    got_kl2, _ = L.bias_kl_loss(jnp.asarray(z), jnp.asarray(np_log_softmax(ref), jnp.float32), jbatch(b))
    np.testing.assert_allclose(got_kl2, want_kl, rtol=1e-5)
    self_kl, _ = L.bias_kl_loss(jnp.asarray(z), jnp.asarray(z), jbatch(b))
    assert abs(float(self_kl)) < 1e-6


def test_replay_and_kl_keep_no_shifted_copy_of_the_logits(rng):
    """The token losses read logits[:, :-1] without materialising that [B, T-1, V] slice
    (XLA:CPU copies it: 64 MB per array at the bench's 8 x 256 x 8192), in the value and in
    the gradient."""
    B, T, V = 2, 16, 40
    b = jbatch(random_batch(rng, B, T, V))
    z = jnp.asarray(rng.normal(size=(B, T, V)).astype(np.float32))
    ref = jnp.asarray(rng.normal(size=(B, T, V)).astype(np.float32))

    def loss(z, ref):
        return L.replay_loss(z, b)[0] + L.bias_kl_loss(z, ref, b)[0]

    hlo = jax.jit(jax.value_and_grad(loss)).lower(z, ref).compile().as_text()
    assert f"f32[{B},{T}," in hlo  # the check would see such arrays
    assert f"f32[{B},{T - 1},{V}]" not in hlo


def test_kl_zero_reference_probabilities_are_finite(rng):
    z = jnp.asarray(rng.normal(size=(4, 5)).astype(np.float32))
    ref = np.array(rng.normal(size=(4, 5)), np.float32)
    ref[:, :2] = -np.inf  # p_ref = 0 on two words
    val = L.token_kl(z, jnp.asarray(ref))
    np.testing.assert_allclose(val, [np_kl_sum(z[None], ref[None], [(0, i)]) for i in range(4)], rtol=1e-5)
    g = jax.grad(lambda x: L.token_kl(x, jnp.asarray(ref)).sum())(z)
    assert np.isfinite(np.asarray(g)).all()
    # d KL / d z_theta = softmax(z) - p_ref
    p = np.exp(np_log_softmax(np.asarray(z)))
    pref = np.exp(np_log_softmax(ref))
    np.testing.assert_allclose(g, p - pref, atol=1e-6)


def test_nll_gradient_matches_analytic(rng):
    B, T, V = 2, 6, 4
    b = random_batch(rng, B, T, V)
    z = rng.normal(size=(B, T, V)).astype(np.float32)
    g = jax.grad(lambda x: L.example_nll(x, jbatch(b)).total.sum())(jnp.asarray(z))
    want = np.zeros((B, T, V))
    p = np.exp(np_log_softmax(z))
    for bi, _, t in np_targets(b):
        want[bi, t - 1] += p[bi, t - 1]
        want[bi, t - 1, b["input_ids"][bi, t]] -= 1.0
    np.testing.assert_allclose(g, want, atol=1e-6)


# ----------------------------------------------------------------- bounded forgetting


def test_hinge_gradient_exactly_zero_at_and_over_bound():
    nll = jnp.array([[0.5, 2.0, 3.0, 7.0]])
    valid = jnp.ones_like(nll, bool)
    g = jax.grad(lambda x: L.lower_bounded_forget_loss(x, valid, 2.0, "hinge")[0])(nll)
    np.testing.assert_array_equal(np.asarray(g), [[-0.25, 0.0, 0.0, 0.0]])
    # end to end through logits: an example whose NLL is over the bound gets no gradient
    z = jnp.asarray(HAND_LOGITS)
    lf = lambda x, lam: L.lower_bounded_forget_loss(  # noqa: E731
        L.example_nll(x, jbatch(HAND_BATCH)).mean, jnp.array([[True]]), lam, "hinge"
    )[0]
    assert not np.any(np.asarray(jax.grad(lf)(z, HAND_NLL_SUM / 2 - 0.1)))
    assert np.any(np.asarray(jax.grad(lf)(z, HAND_NLL_SUM / 2 + 0.1)))


def test_smooth_bound_never_below_and_matches_ascent_far_from_bound():
    lam = 20.0
    nll = jnp.array([0.0, 0.1, 1.0, 19.0, 20.0, 21.0, 100.0, 1e4, 1e8])
    val = L.bounded_forget_per_example(nll, lam, "smooth")
    assert val.dtype == jnp.float32
    assert np.all(np.asarray(val) >= -lam)
    np.testing.assert_allclose(val[:3], -np.asarray(nll[:3]), atol=1e-6)  # NLL << lam
    np.testing.assert_allclose(val[-1], -lam)
    g = jax.grad(lambda x: L.bounded_forget_per_example(x, lam, "smooth").sum())(nll)
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g) <= 0)


@pytest.mark.parametrize("form", ["hinge", "smooth"])
def test_lower_bound_never_crossed_under_many_ascent_steps(rng, form):
    B, T, V, lam = 2, 6, 5, 3.0
    b = jbatch(random_batch(rng, B, T, V))
    cfg = {"bound": lam, "bound_form": form, "replay_weight": 0.0, "bias_weight": 0.0}
    obj = L.make_objective(cfg)

    @jax.jit
    def step(z):
        (loss, m), g = jax.value_and_grad(obj, has_aux=True)(z, b)
        return z - 2.0 * g, loss, m["forget_nll"], g

    z = jnp.asarray(rng.normal(size=(B, T, V)).astype(np.float32))
    for _ in range(300):
        z, loss, nll, g = step(z)
        assert float(loss) >= -lam
    assert float(nll) > lam - 0.5  # the ascent did reach the bound
    if form == "hinge":
        assert float(nll) >= lam and not np.any(np.asarray(g))  # stopped: no gradient left


# ------------------------------------------------------------------------ NPO, SimNPO


def test_npo_simnpo_extreme_inputs_are_finite():
    x = jnp.array([-1e4, -1e3, 0.0, 1e3, 1e4])
    for fn in (
        lambda v: L.npo_per_example(v, jnp.zeros_like(v), 1.0),
        lambda v: L.npo_per_example(v, -v, 0.1),
        lambda v: L.simnpo_per_example(v, jnp.ones_like(v), 1.0, 2.0),
        lambda v: L.simnpo_per_example(v, jnp.full_like(v, 3.0), 5.0, 0.0),
    ):
        assert np.isfinite(np.asarray(fn(x))).all()
        assert np.isfinite(np.asarray(jax.grad(lambda v: fn(v).sum())(x))).all()
    # log_sigmoid form, not log(sigmoid): at logp_theta - logp_ref = 1e4, beta 1, loss = 2e4
    np.testing.assert_allclose(L.npo_per_example(jnp.array(1e4), jnp.array(0.0), 1.0), 2e4, rtol=1e-6)


def test_npo_reduces_to_ga_direction_as_beta_goes_to_zero(rng):
    B, T, V = 3, 6, 5
    b = random_batch(rng, B, T, V)
    b["loss_mask"][:] = 0
    b["loss_mask"][:, 2:5] = 1  # equal lengths: GA on means == GA on sums up to a scale
    b = jbatch(b)
    z = jnp.asarray(rng.normal(size=(B, T, V)).astype(np.float32))
    ref = jnp.asarray(rng.normal(size=(B, T, V)).astype(np.float32))
    g_ga = jax.grad(lambda x: L.make_objective({"method": "ga"})(x, b)[0])(z)
    cos = lambda a, c: float(jnp.vdot(a, c) / (jnp.linalg.norm(a) * jnp.linalg.norm(c)))  # noqa: E731
    npo = lambda beta: L.make_objective({"method": "npo", "beta": beta, "replay_weight": 0.0})  # noqa: E731
    g_small = jax.grad(lambda x: npo(1e-4)(x, b, forget_ref_logits=ref)[0])(z)
    g_large = jax.grad(lambda x: npo(5.0)(x, b, forget_ref_logits=ref)[0])(z)
    assert cos(g_small, g_ga) > 1 - 1e-5
    assert cos(g_large, g_ga) < cos(g_small, g_ga)


def test_simnpo_length_normalisation():
    # the same per-token log-prob on 2 and on 4 target tokens gives the same loss
    logits = np.tile(np.array([1.0, 0.0, -1.0], np.float32), (2, 6, 1))
    b = {
        "input_ids": np.zeros((2, 6), np.int32),
        "loss_mask": np.array([[0, 1, 1, 0, 0, 0], [0, 1, 1, 1, 1, 0]], np.int32),
        "segment_ids": np.ones((2, 6), np.int32),
    }
    lp = L.sequence_log_probs(jnp.asarray(logits), jbatch(b))
    per = L.simnpo_per_example(lp.total, lp.count, 2.0, 0.5)
    np.testing.assert_allclose(per[0], per[1], rtol=1e-6)
    tok = np_log_softmax(logits[0, 0])[0]
    np.testing.assert_allclose(per[0, 0], -(2 / 2.0) * np_log_sigmoid(-2.0 * tok - 0.5), rtol=1e-6)
    # NPO is not length-normalised: the longer example's loss differs
    npo = L.npo_per_example(lp.total, jnp.zeros_like(lp.total), 2.0)
    assert abs(float(npo[0, 0] - npo[1, 0])) > 1e-3


# ------------------------------------------------------------------------ combinator

METHOD_CFGS = [
    {"method": "lower_bounded", "bound": 1.2, "bound_form": "smooth"},
    {"method": "lower_bounded", "bound": 1.2, "bound_form": "hinge", "replay_weight": 0.5, "bias_weight": 2.0},
    {"method": "ga", "forget_weight": 0.7},
    {"method": "graddiff", "replay_weight": 0.3},
    {"method": "kl", "bias_weight": 0.4},
    {"method": "npo", "beta": 0.5},
    {"method": "simnpo", "beta": 2.5, "gamma": 0.3},
]


def _inputs(rng, packed):
    B, T, V = 2, 9, 5
    fb = random_batch(rng, B, T, V, packed=packed)
    rb = random_batch(rng, B, T, V)
    arrays = [rng.normal(size=(B, T, V)).astype(np.float32) for _ in range(4)]
    return fb, rb, arrays


@pytest.mark.parametrize("cfg", METHOD_CFGS, ids=lambda c: c["method"] + c.get("bound_form", ""))
@pytest.mark.parametrize("packed", [False, True])
def test_objective_values_and_gradients_match_numpy(rng, cfg, packed):
    fb, rb, (fl, rl, fref, rref) = _inputs(rng, packed)
    obj = jax.jit(L.make_objective(cfg, max_segments=3 if packed else None))
    kw = dict(forget_ref_logits=jnp.asarray(fref), replay_ref_logits=jnp.asarray(rref))

    def run(x):
        return obj(x, jbatch(fb), jnp.asarray(rl), jbatch(rb), **kw)

    loss, metrics = run(jnp.asarray(fl))
    want = np_objective(cfg, fl, fb, rl, rb, fref, rref, packed)
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
    assert metrics["loss"] == loss and loss.dtype == jnp.float32
    ex = np_examples(fl, fb, packed)
    np.testing.assert_allclose(metrics["forget_nll"], np.mean([-lp / n for lp, n in ex.values()]), rtol=1e-5)
    assert float(metrics["forget_examples"]) == len(ex)
    assert float(metrics["forget_tokens"]) == sum(n for _, n in ex.values())
    # gradient w.r.t. the forget logits: finite differences of the numpy objective
    g = jax.grad(lambda x: run(x)[0])(jnp.asarray(fl))
    fd = np_fd_grad(lambda x: np_objective(cfg, x, fb, rl, rb, fref, rref, packed), fl)
    np.testing.assert_allclose(g, fd, atol=2e-5)


def test_metrics_per_method():
    keys = {
        "lower_bounded": {"forget_loss", "replay_loss", "bias_loss", "frac_at_bound", "replay_tokens", "bias_tokens"},
        "ga": {"forget_loss"},
        "graddiff": {"forget_loss", "replay_loss", "replay_tokens"},
        "kl": {"forget_loss", "bias_loss", "bias_tokens"},
        "npo": {"forget_loss", "replay_loss", "replay_tokens", "forget_logp"},
        "simnpo": {"forget_loss", "replay_loss", "replay_tokens", "forget_logp"},
    }
    b = jbatch(HAND_BATCH)
    z = jnp.asarray(HAND_LOGITS)
    for method, want in keys.items():
        _, m = L.total_loss({"method": method}, z, b, z, b, forget_ref_logits=z, replay_ref_logits=z)
        assert set(m) == want | {"loss", "forget_nll", "forget_examples", "forget_tokens"}, method
        assert all(v.shape == () and v.dtype == jnp.float32 for v in m.values())


def test_npo_precomputed_reference_equals_reference_logits(rng):
    fb, _, (fl, _, fref, _) = _inputs(rng, True)
    obj = L.make_objective({"method": "npo", "replay_weight": 0.0}, max_segments=3)
    ref_lp = L.sequence_log_probs(jnp.asarray(fref), jbatch(fb), 3).total
    a = obj(jnp.asarray(fl), jbatch(fb), forget_ref_logits=jnp.asarray(fref))[0]
    c = obj(jnp.asarray(fl), jbatch(fb), forget_ref_seq_logp=ref_lp)[0]
    np.testing.assert_allclose(a, c, rtol=1e-6)


def test_bias_on_forget_prompt(rng):
    fb, rb, (fl, rl, fref, rref) = _inputs(rng, False)
    cfg = {"bias_on_forget_prompt": True, "replay_weight": 0.0, "forget_weight": 0.0}
    _, m = L.total_loss(cfg, jnp.asarray(fl), jbatch(fb), jnp.asarray(rl), jbatch(rb),
                        forget_ref_logits=jnp.asarray(fref), replay_ref_logits=jnp.asarray(rref))
    rpos = [(b, t - 1) for b, _, t in np_targets(rb)]
    ppos = []  # forget-prompt tokens: same-segment, non-padding, loss_mask 0
    for b in range(fb["input_ids"].shape[0]):
        for t in range(1, fb["input_ids"].shape[1]):
            s = fb["segment_ids"][b]
            if fb["loss_mask"][b, t] == 0 and s[t] > 0 and s[t] == s[t - 1]:
                ppos.append((b, t - 1))
    want = (np_kl_sum(rl, rref, rpos) + np_kl_sum(fl, fref, ppos)) / (len(rpos) + len(ppos))
    np.testing.assert_allclose(m["bias_loss"], want, rtol=1e-5)
    assert float(m["bias_tokens"]) == len(rpos) + len(ppos)


def test_packed_equals_one_example_per_row(rng):
    V, lens = 6, [(2, 3), (1, 4), (3, 2)]  # (prompt, target) lengths of three examples
    T_row = max(p + t for p, t in lens)
    rows = {k: np.zeros((3, T_row), np.int32) for k in ("input_ids", "loss_mask", "segment_ids")}
    row_logits = np.zeros((3, T_row, V), np.float32)
    packed = {k: np.zeros((1, 16), np.int32) for k in rows}
    packed_logits = np.zeros((1, 16, V), np.float32)
    start = 0
    for i, (p, t) in enumerate(lens):
        n = p + t
        ids = rng.integers(0, V, n)
        m = np.r_[np.zeros(p), np.ones(t)]
        lg = rng.normal(size=(n, V))
        rows["input_ids"][i, :n], rows["loss_mask"][i, :n], rows["segment_ids"][i, :n] = ids, m, 1
        row_logits[i, :n] = lg
        sl = slice(start, start + n)
        packed["input_ids"][0, sl], packed["loss_mask"][0, sl], packed["segment_ids"][0, sl] = ids, m, i + 1
        packed_logits[0, sl] = lg
        start += n
    row_logits[:, :, 0] += np.where(rows["segment_ids"] == 0, 50.0, 0.0)  # junk in padding
    packed_logits[0, start:] = 99.0
    a = L.example_nll(jnp.asarray(row_logits), jbatch(rows))
    c = L.example_nll(jnp.asarray(packed_logits), jbatch(packed), max_segments=4)
    np.testing.assert_allclose(c.total[0, :3], a.total[:, 0], rtol=1e-6)
    np.testing.assert_allclose(c.mean[0, :3], a.mean[:, 0], rtol=1e-6)
    assert list(np.asarray(c.valid[0])) == [True, True, True, False]
    for cfg in METHOD_CFGS:
        cfg = dict(cfg, replay_weight=0.0, bias_weight=0.0)
        la, ma = L.total_loss(cfg, jnp.asarray(row_logits), jbatch(rows),
                              forget_ref_logits=jnp.asarray(0.5 * row_logits))
        lc, mc = L.total_loss(cfg, jnp.asarray(packed_logits), jbatch(packed), max_segments=4,
                              forget_ref_logits=jnp.asarray(0.5 * packed_logits))
        np.testing.assert_allclose(lc, la, rtol=1e-5, err_msg=str(cfg))
        np.testing.assert_allclose(mc["forget_nll"], ma["forget_nll"], rtol=1e-5)
        assert float(mc["forget_examples"]) == 3.0


def test_zero_target_examples_give_no_nan(rng):
    fb, rb, (fl, rl, fref, rref) = _inputs(rng, False)
    fb = dict(fb, loss_mask=np.zeros_like(fb["loss_mask"]))
    rb = dict(rb, loss_mask=np.zeros_like(rb["loss_mask"]))
    for cfg in METHOD_CFGS:
        obj = L.make_objective(cfg)

        def f(x):
            return obj(x, jbatch(fb), jnp.asarray(rl), jbatch(rb),
                       forget_ref_logits=jnp.asarray(fref), replay_ref_logits=jnp.asarray(rref))

        (loss, m), g = jax.value_and_grad(f, has_aux=True)(jnp.asarray(fl))
        assert float(loss) == 0.0
        assert all(np.isfinite(float(v)) for v in m.values())
        assert float(m["forget_examples"]) == 0.0
        assert np.isfinite(np.asarray(g)).all() and not np.any(np.asarray(g))


def test_bf16_logits_give_float32_losses(rng):
    fb, rb, arrays = _inputs(rng, True)
    fl, rl, fref, rref = (jnp.asarray(a, jnp.bfloat16) for a in arrays)
    for cfg in METHOD_CFGS:
        loss, m = L.total_loss(cfg, fl, jbatch(fb), rl, jbatch(rb), max_segments=3,
                               forget_ref_logits=fref, replay_ref_logits=rref)
        assert loss.dtype == jnp.float32 and all(v.dtype == jnp.float32 for v in m.values())
        # same value as the float32 computation on the bf16-rounded logits
        up = [np.asarray(a, np.float32) for a in (fl, rl, fref, rref)]
        want = np_objective(cfg, up[0], fb, up[1], rb, up[2], up[3], packed=True)
        np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda x: L.total_loss({"method": "ga"}, x, jbatch(fb))[0])(fl)
    assert g.dtype == jnp.bfloat16  # the gradient comes back in the logits' dtype


def test_config_dict_and_mapping_accepted_and_errors():
    c = L.default_loss_config()
    assert isinstance(c, ml_collections.ConfigDict)
    d = L.validate_loss_config(c)
    assert d["method"] == "lower_bounded" and d["bound_form"] == "smooth"
    c.method = "npo"
    assert L.validate_loss_config(c)["method"] == "npo"
    assert L.validate_loss_config({"bound": 2})["bound"] == 2.0
    bad = [
        {"method": "dpo"},
        {"bound": -1.0},
        {"beta": 0.0},
        {"beta": -0.5},
        {"forget_weight": -1.0},
        {"bound_form": "soft"},
        {"bound": float("nan")},
        {"bound": "5"},
        {"bias_on_forget_prompt": 1},
        {"forgt_weight": 1.0},
    ]
    for cfg in bad:
        with pytest.raises(SynthflawError):
            L.make_objective(cfg)
    with pytest.raises(SynthflawError, match="method"):
        L.make_objective({"method": "dpo"})
    # a weighted term whose input is missing
    b, z = jbatch(HAND_BATCH), jnp.asarray(HAND_LOGITS)
    with pytest.raises(SynthflawError, match="replay_logits"):
        L.total_loss({"method": "graddiff"}, z, b)
    with pytest.raises(SynthflawError, match="forget_ref"):
        L.total_loss({"method": "npo", "replay_weight": 0.0}, z, b)
    # a term with weight 0 needs nothing
    L.total_loss({"replay_weight": 0.0, "bias_weight": 0.0}, z, b)


def test_every_default_config_field_is_documented():
    src = inspect.getsource(L.default_loss_config).splitlines()
    fields = L.default_loss_config().to_dict()
    for name in fields:
        i = next(i for i, line in enumerate(src) if line.strip().startswith(f"c.{name} ="))
        assert src[i - 1].strip().startswith("#"), name


def test_lm_method_is_weighted_replay_nll_without_forget():
    """method "lm" (pre-training / SFT): w_r times the hand-computed replay NLL, no forget input."""
    objective = L.make_objective({"method": "lm", "replay_weight": 2.0})
    loss, metrics = objective(None, None, jnp.asarray(HAND_LOGITS), jbatch(HAND_BATCH))
    np.testing.assert_allclose(float(metrics["replay_loss"]), HAND_NLL_SUM / 2, rtol=1e-6)
    np.testing.assert_allclose(float(loss), HAND_NLL_SUM, rtol=1e-6)
    assert set(metrics) == {"loss", "replay_loss", "replay_tokens"}
