"""Pure JAX loss functions for unlearning (paper.md, "The mitigation"): no Flax, no state.

Batch convention (from the data pipeline): a dict with
  `input_ids`   int32 [B, T]
  `loss_mask`   [B, T]  1 where input_ids[:, t] is a target token (to learn or to forget)
  `segment_ids` int32 [B, T]  example id inside a packed row, 1..S; 0 = padding (optional)
  `positions`   int32 [B, T]  (not used here)
Logits are [B, T, V] at positions 0..T-1; the prediction for token t comes from the logits
at t-1, so targets are input_ids[:, 1:] weighted by loss_mask[:, 1:] (`shift_targets`).

Per-example quantities are [B, S] with a boolean validity mask: S = 1 ("one example per
row", `max_segments=None`) or S = `max_segments`, where segment id s (1..S) of a packed
row goes to column s - 1. Tokens of segments with id > max_segments are dropped (the
caller sizes max_segments from the packer). An example with no target tokens is invalid:
its mean is 0 (never NaN) and it is left out of every average.

All log-probabilities and losses are float32, whatever the logits' dtype.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from synthflaw_jax import forgetting
from synthflaw_jax.errors import SynthflawError

Array = jax.Array
Batch = Mapping[str, Array]


# ----------------------------------------------------------------------------- tokens


def shift_targets(
    input_ids: Array, loss_mask: Array, segment_ids: Array | None = None
) -> tuple[Array, Array, Array | None]:
    """Next-token targets: (targets, weights, target_segment_ids), each [B, T-1].

    targets[:, t] = input_ids[:, t+1] is predicted by logits[:, t] (use `logits[:, :-1]`);
    weights[:, t] = loss_mask[:, t+1] * [seg[:, t+1] > 0] * [seg[:, t+1] == seg[:, t]]
    (float32), so a target is never predicted across a packed-example boundary or from
    padding. Without segment_ids the weights are loss_mask[:, 1:] and the segments None.
    """
    targets = input_ids[:, 1:]
    weights = jnp.asarray(loss_mask[:, 1:], jnp.float32)
    if segment_ids is None:
        return targets, weights, None
    seg_next, seg_prev = segment_ids[:, 1:], segment_ids[:, :-1]
    same = (seg_next > 0) & (seg_next == seg_prev)
    return targets, weights * same.astype(jnp.float32), seg_next


def prompt_weights(batch: Batch) -> Array:
    """[B, T-1] weights of non-target ("prompt") tokens: (1 - loss_mask[:, t+1]) on real,
    same-segment positions (without segment_ids padding cannot be told apart and counts);
    used for the optional KL on forget-prompt tokens."""
    inverse = 1.0 - jnp.asarray(batch["loss_mask"], jnp.float32)
    return shift_targets(batch["input_ids"], inverse, batch.get("segment_ids"))[1]


def log_softmax_f32(logits: Array) -> Array:
    """Full log-softmax in float32: log p(v) = z_v - log sum_u exp(z_u), [..., V]."""
    return jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)


def token_log_probs(logits: Array, targets: Array) -> Array:
    """log p(targets) = z_target - logsumexp(z) per position, float32, shape of targets.

    logits [..., V] (any float dtype; upcast to float32 first) and targets [...] int.
    The target logit is picked with a one-hot select (not a gather), which stays cheap
    when the vocabulary axis is sharded; `where`, not a product, so -inf logits elsewhere
    cannot make NaN. Out-of-range targets (padding ids) give -logsumexp(z), finite.
    """
    z = jnp.asarray(logits, jnp.float32)
    lse = jax.scipy.special.logsumexp(z, axis=-1)
    hit = targets[..., None] == jnp.arange(z.shape[-1], dtype=targets.dtype)
    picked = jnp.sum(jnp.where(hit, z, 0.0), axis=-1)
    return picked - lse


def _zero_unweighted(logits: Array, weights: Array) -> Array:
    """logits [B, T, V] with every position whose next-token weight ([B, T-1]) is 0, and the
    last position, replaced by 0 (the "double where"): a later `where` keeps their value out
    of the loss, this keeps inf/NaN there out of the gradient (0 * NaN in the backward pass
    of the log-softmax). The losses then run on all T positions and cut the last afterwards:
    the same values without materialising a [B, T-1, V] copy (XLA:CPU copies the slice)."""
    used = jnp.pad(weights > 0, ((0, 0), (0, 1)))[..., None]
    return jnp.where(used, logits, jnp.zeros((), logits.dtype))


def _predicting_log_probs(logits: Array, targets: Array, weights: Array | None = None) -> Array:
    """token_log_probs(logits[:, :-1], targets) for next-token targets [B, T-1], computed
    on all T positions (a dummy target for the last) and cut afterwards; with `weights`
    [B, T-1], positions of weight 0 are zeroed first (`_zero_unweighted`)."""
    if weights is not None:
        logits = _zero_unweighted(logits, weights)
    padded = jnp.pad(targets, ((0, 0), (0, 1)))
    return token_log_probs(logits, padded)[:, :-1]


# ------------------------------------------------------------------------- examples


class ExampleStats(NamedTuple):
    """Per-example sums over target tokens: total [B, S], count [B, S], valid [B, S] bool."""

    total: Array
    count: Array
    valid: Array

    @property
    def mean(self) -> Array:
        """total / count where valid, 0 elsewhere (no NaN for zero-token examples)."""
        return jnp.where(self.valid, self.total / jnp.maximum(self.count, 1.0), 0.0)


def per_example_sum(
    values: Array,
    weights: Array,
    segment_ids: Array | None = None,
    max_segments: int | None = None,
) -> Array:
    """out[b, s] = sum_t values[b, t] * weights[b, t] * [segment_ids[b, t] == s + 1].

    max_segments=None: one example per row, out is [B, 1] (segment_ids ignored; padding
    must already carry weight 0, as `shift_targets` ensures). Otherwise segment_ids
    [B, T'] is required and out is [B, max_segments]. Masked positions contribute exactly
    0 even if their value is inf/NaN.
    """
    contrib = jnp.where(weights > 0, jnp.asarray(values, jnp.float32) * weights, 0.0)
    if max_segments is None:
        return jnp.sum(contrib, axis=-1, keepdims=True)
    if segment_ids is None:
        raise ValueError("per_example_sum: max_segments given but segment_ids is None")
    # one_hot of id-1: padding (id 0 -> -1) and ids > max_segments give all-zero rows.
    onehot = jax.nn.one_hot(segment_ids - 1, int(max_segments), dtype=jnp.float32)
    return jnp.einsum("bt,bts->bs", contrib, onehot, precision=jax.lax.Precision.HIGHEST)


def sequence_log_probs(
    logits: Array, batch: Batch, max_segments: int | None = None
) -> ExampleStats:
    """Per-example sequence log-prob log pi(y|x) = sum_{t in targets} log p(y_t | y_<t).

    Returns ExampleStats(total=sum log-prob, count=|y| target tokens, valid=|y| > 0).
    """
    targets, weights, seg = shift_targets(
        batch["input_ids"], batch["loss_mask"], batch.get("segment_ids")
    )
    logp = _predicting_log_probs(logits, targets, weights)
    total = per_example_sum(logp, weights, seg, max_segments)
    count = per_example_sum(jnp.ones_like(weights), weights, seg, max_segments)
    return ExampleStats(total, count, count > 0)


def example_nll(logits: Array, batch: Batch, max_segments: int | None = None) -> ExampleStats:
    """Per-example NLL: total = -sum_t log p(y_t), mean = total / |y| (0 if |y| = 0)."""
    lp = sequence_log_probs(logits, batch, max_segments)
    return ExampleStats(-lp.total, lp.count, lp.valid)


def masked_average(values: Array, valid: Array) -> Array:
    """sum(values * valid) / max(sum(valid), 1): average over valid entries, 0 if none."""
    valid_f = jnp.asarray(valid, jnp.float32)
    total = jnp.sum(jnp.where(valid, values, 0.0))
    return total / jnp.maximum(jnp.sum(valid_f), 1.0)


# ------------------------------------------------------------------ paper's objective


def bounded_forget_per_example(nll: Array, bound: float, form: str = "smooth") -> Array:
    """Lower-bounded forgetting term per example, bound lam = `bound`.

    hinge:  l_f = -min(NLL, lam); written as -where(NLL < lam, NLL, lam) so an example at
            or over the bound has gradient exactly 0 (jnp.minimum splits a tie 1/2-1/2).
    smooth: l_f = softplus(lam - NLL) - lam; ~ -NLL for NLL << lam, decreases to -lam as
            NLL grows and is never below -lam (softplus > 0; in float32 it may reach -lam).
    """
    nll = jnp.asarray(nll, jnp.float32)
    if form == "hinge":
        return -jnp.where(nll < bound, nll, bound)
    if form == "smooth":
        return jax.nn.softplus(bound - nll) - bound
    raise ValueError(f"bounded_forget_per_example: unknown form {form!r}")


def lower_bounded_forget_loss(
    nll_mean: Array, valid: Array, bound: float, form: str = "smooth"
) -> tuple[Array, Array]:
    """(l_f, fraction at bound): l_f = mean over valid examples of the bounded term.

    NLL is each example's mean token NLL ([B, S]). The fraction at the bound is
    #{valid : NLL >= lam} / #valid for both forms; for the smooth form this counts the
    examples past the soft knee, whose gradient weight sigmoid(lam - NLL) is <= 1/2.
    """
    per = bounded_forget_per_example(nll_mean, bound, form)
    at_bound = jnp.asarray(nll_mean >= bound, jnp.float32)
    return masked_average(per, valid), masked_average(at_bound, valid)


def replay_loss(logits: Array, batch: Batch) -> tuple[Array, Array]:
    """(l_r, number of target tokens): l_r = sum_t w_t * (-log p(y_t)) / max(sum_t w_t, 1).

    Token-weighted over the whole replay batch (not example-weighted): it is the ordinary
    language-modelling objective the model was trained with, every replay token counts
    the same whether its example is short, long, truncated or packed, and it needs no
    segment bookkeeping.
    """
    targets, weights, _ = shift_targets(
        batch["input_ids"], batch["loss_mask"], batch.get("segment_ids")
    )
    logp = _predicting_log_probs(logits, targets, weights)
    nll_sum = -jnp.sum(jnp.where(weights > 0, logp * weights, 0.0))
    count = jnp.sum(weights)
    return nll_sum / jnp.maximum(count, 1.0), count


def token_kl(logits: Array, ref_logits: Array) -> Array:
    """KL(pi_ref || pi_theta) per position: sum_v p_ref(v) (log p_ref(v) - log p_theta(v)).

    Both inputs [..., V]; `ref_logits` may be reference logits or reference log-probs
    (log_softmax is idempotent on log-probs, and re-normalises bf16-stored ones). Both go
    through a float32 log_softmax; p_ref = exp(log p_ref), and vocabulary entries with
    p_ref = 0 contribute exactly 0 (no 0 * -inf). The reference gets no gradient.
    """
    logp = log_softmax_f32(logits)
    ref_logp = log_softmax_f32(jax.lax.stop_gradient(ref_logits))
    p_ref = jnp.exp(ref_logp)
    support = p_ref > 0
    diff = jnp.where(support, ref_logp, 0.0) - jnp.where(support, logp, 0.0)
    return jnp.sum(jnp.where(support, p_ref * diff, 0.0), axis=-1)


def masked_token_kl(
    logits: Array, ref_logits: Array, weights: Array
) -> tuple[Array, Array]:
    """(sum_t w_t KL_t, sum_t w_t) over predicting positions logits[:, :-1] / ref[:, :-1].

    `weights` is [B, T-1] from `shift_targets` (targets) or `prompt_weights` (prompts).
    Positions of weight 0 are zeroed before the KL, so inf/NaN there reach neither the value
    nor the gradient.
    """
    kl = token_kl(_zero_unweighted(logits, weights), _zero_unweighted(ref_logits, weights))[:, :-1]
    return jnp.sum(jnp.where(weights > 0, kl * weights, 0.0)), jnp.sum(weights)


def bias_kl_loss(logits: Array, ref_logits: Array, batch: Batch) -> tuple[Array, Array]:
    """(l_b, count): l_b = sum_t w_t KL(pi_ref || pi_theta)_t / max(sum_t w_t, 1) with
    w_t the target weights of `batch` (token-weighted, like the replay loss)."""
    _, weights, _ = shift_targets(
        batch["input_ids"], batch["loss_mask"], batch.get("segment_ids")
    )
    total, count = masked_token_kl(logits, ref_logits, weights)
    return total / jnp.maximum(count, 1.0), count


# ------------------------------------------------------------------------ baselines


def ga_loss(nll_mean: Array, valid: Array) -> Array:
    """Gradient ascent: l = -mean over valid examples of NLL (each example's token mean)."""
    return -masked_average(nll_mean, valid)


def graddiff_loss(
    forget_nll_mean: Array, forget_valid: Array, replay_nll: Array, replay_weight: float = 1.0
) -> Array:
    """Gradient difference: l = GA(forget) + replay_weight * NLL(replay)."""
    return ga_loss(forget_nll_mean, forget_valid) + replay_weight * replay_nll


def kl_ga_loss(
    forget_nll_mean: Array, forget_valid: Array, retain_kl: Array, kl_weight: float = 1.0
) -> Array:
    """KL-regularised GA: l = GA(forget) + kl_weight * KL(pi_ref || pi_theta)(retain)."""
    return ga_loss(forget_nll_mean, forget_valid) + kl_weight * retain_kl


def npo_per_example(logp_theta: Array, logp_ref: Array, beta: float) -> Array:
    """NPO: -(2/beta) * log_sigmoid(-beta * (logp_theta - logp_ref)), sequence log-probs.

    jax.nn.log_sigmoid is stable (= -softplus(-x)): finite for |x| ~ 1e4 and beyond.
    As beta -> 0 its gradient tends to that of logp_theta, i.e. sequence-level GA.
    """
    ratio = jnp.asarray(logp_theta, jnp.float32) - jax.lax.stop_gradient(
        jnp.asarray(logp_ref, jnp.float32)
    )
    return -(2.0 / beta) * jax.nn.log_sigmoid(-beta * ratio)


def npo_loss(logp_theta: Array, logp_ref: Array, valid: Array, beta: float) -> Array:
    """Mean over valid examples of `npo_per_example` (invalid slots, whatever they hold,
    reach neither the value nor the gradient)."""
    logp_theta, logp_ref = jnp.where(valid, logp_theta, 0.0), jnp.where(valid, logp_ref, 0.0)
    return masked_average(npo_per_example(logp_theta, logp_ref, beta), valid)


def simnpo_per_example(
    logp_theta: Array, num_tokens: Array, beta: float, gamma: float
) -> Array:
    """SimNPO: -(2/beta) * log_sigmoid(-(beta/|y|) * logp_theta - gamma); no reference.

    |y| = number of target tokens (clamped to >= 1 so a zero-token example stays finite).
    """
    norm = jnp.asarray(logp_theta, jnp.float32) / jnp.maximum(num_tokens, 1.0)
    return -(2.0 / beta) * jax.nn.log_sigmoid(-beta * norm - gamma)


def simnpo_loss(
    logp_theta: Array, num_tokens: Array, valid: Array, beta: float, gamma: float
) -> Array:
    """Mean over valid examples of `simnpo_per_example` (invalid slots cannot poison it)."""
    logp_theta = jnp.where(valid, logp_theta, 0.0)
    return masked_average(simnpo_per_example(logp_theta, num_tokens, beta, gamma), valid)


# ------------------------------------------------------------------------ combinator

METHODS = ("lower_bounded", "ga", "graddiff", "kl", "npo", "simnpo", "lm")
# method -> (forget term, uses replay NLL, uses KL bias term); a term whose weight is 0
# is not computed at all (and needs no inputs).
_TERMS = {
    "lower_bounded": ("bounded", True, True),
    "ga": ("ga", False, False),
    "graddiff": ("ga", True, False),
    "kl": ("ga", False, True),
    "npo": ("npo", True, False),
    "simnpo": ("simnpo", True, False),
    "lm": (None, True, False),  # plain language modelling / SFT on the replay stream, no forgetting
}


def default_loss_config() -> ml_collections.ConfigDict:
    """The loss config with its defaults (the paper's method, smooth bound)."""
    c = ml_collections.ConfigDict()
    # Objective: "lower_bounded" (paper: w_f*l_f + w_r*l_r + w_b*l_b), or a baseline:
    # "ga" (w_f*GA), "graddiff" (w_f*GA + w_r*NLL_replay), "kl" (w_f*GA + w_b*KL_replay),
    # "npo" (w_f*NPO + w_r*NLL_replay), "simnpo" (w_f*SimNPO + w_r*NLL_replay),
    # "lm" (w_r*NLL_replay only: pre-training or SFT with the same engine; no forget stream).
    c.method = "lower_bounded"
    # w_f: weight of the forgetting term (on the forget batch).
    c.forget_weight = 1.0
    # w_r: weight of the replay NLL (token-weighted mean on the replay batch); 0 = off.
    c.replay_weight = 1.0
    # w_b: weight of the bias term KL(pi_ref || pi_theta) on replay target tokens; 0 = off.
    c.bias_weight = 1.0
    # Also put forget-prompt tokens (loss_mask 0, not padding) into the KL term
    # (token-weighted together with the replay tokens); needs forget reference logits.
    c.bias_on_forget_prompt = False
    # lambda: lower bound on the per-example mean token NLL of forget examples (nats, >= 0).
    c.bound = 5.0
    # "smooth": softplus(lam - NLL) - lam (default); "hinge": -min(NLL, lam); "unlikelihood":
    # per token log(1 - tau) - log(1 - p_t) while p_t > tau (forgetting.py).
    c.bound_form = "smooth"
    # unlikelihood: a target token is pushed down only while its probability p_t > tau, in (0, 1).
    c.tau = 0.3
    # "all": every forget target token; "pattern": only tokens of the forget corpus's recurring
    # opening/closing phrases (detected at the start of a run, written to WORKDIR/pattern.json).
    c.forget_scope = "all"
    # Phrases that define the pattern scope instead of detection, e.g. ["The answer is", "In summary,"]:
    # each is matched (as words, case ignored) at an answer's start, its last sentence's start and its end.
    c.pattern_templates = []
    # Detection: a phrase recurs when at least this share of the forget answers has it at the same place.
    c.pattern_min_share = 0.3
    # NLL forms: "absolute" (bound in nats) or "reference" (bound = nats above the frozen reference
    # model's own mean NLL of each example, on the same tokens; needs a reference forward pass).
    c.bound_reference = "absolute"
    # NPO / SimNPO inverse temperature beta (> 0).
    c.beta = 0.1
    # SimNPO reward margin gamma (finite; 0 in the SimNPO paper's default runs).
    c.gamma = 0.0
    return c


def _as_dict(cfg: Any) -> dict:
    if isinstance(cfg, ml_collections.ConfigDict):
        return cfg.to_dict()
    if isinstance(cfg, Mapping):
        return dict(cfg)
    raise SynthflawError(f"loss config: expected a ConfigDict or mapping, got {type(cfg).__name__}")


def _number(d: dict, key: str, *, minimum: float | None, strict: bool = False) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SynthflawError(f"loss config field '{key}': expected a number, got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise SynthflawError(f"loss config field '{key}': must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        sign = ">" if strict else ">="
        raise SynthflawError(f"loss config field '{key}': must be {sign} {minimum}, got {value}")
    return value


def validate_loss_config(cfg: Any) -> dict:
    """Checks a loss config (ConfigDict or mapping) and returns a plain dict of all fields,
    missing ones filled from `default_loss_config()`. Raises SynthflawError on an unknown
    field, method or bound_form, a negative weight or bound, or beta <= 0."""
    given = _as_dict(cfg)
    d = default_loss_config().to_dict()
    unknown = sorted(set(given) - set(d))
    if unknown:
        raise SynthflawError(
            f"loss config: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(d))})"
        )
    d.update(given)
    if d["method"] not in METHODS:
        raise SynthflawError(
            f"loss config field 'method': unknown value {d['method']!r} "
            f"(expected one of {', '.join(METHODS)})"
        )
    forgetting.validate(d, _number)
    for key in ("forget_weight", "replay_weight", "bias_weight", "bound"):
        d[key] = _number(d, key, minimum=0.0)
    d["beta"] = _number(d, "beta", minimum=0.0, strict=True)
    d["gamma"] = _number(d, "gamma", minimum=None)
    if not isinstance(d["bias_on_forget_prompt"], bool):
        raise SynthflawError(
            f"loss config field 'bias_on_forget_prompt': expected true/false, "
            f"got {d['bias_on_forget_prompt']!r}"
        )
    return d


Objective = Callable[..., tuple[Array, dict]]


def make_objective(cfg: Any, max_segments: int | None = None) -> Objective:
    """Validates `cfg` once and returns a pure, jit-able objective

        objective(forget_logits, forget_batch, replay_logits=None, replay_batch=None, *,
                  forget_ref_logits=None, forget_ref_seq_logp=None, replay_ref_logits=None)
            -> (loss, metrics)

    Logits are the model's [B, T, V] outputs for each batch (the caller runs the model).
    Reference inputs (no gradient flows into them):
      forget_ref_logits   [B, T, V] reference logits or log-probs on the forget batch
                          (NPO, and the KL on forget prompts);
      forget_ref_seq_logp [B, S] precomputed reference sequence log-probs (NPO; used
                          instead of forget_ref_logits);
      replay_ref_logits   [B, T, V] reference logits or log-probs on the replay batch (KL).
    `max_segments`: None = one example per row of the forget batch; an int S = packed rows,
    per-example values via segment_ids (must match forget_ref_seq_logp's S).

    Terms (see `default_loss_config`) are weighted and summed; a term with weight 0 is
    skipped. A missing input a weighted term needs raises SynthflawError at trace time.
    metrics (float32 scalars): loss; forget_loss, replay_loss, bias_loss for the terms in
    use; forget_nll (mean over valid forget examples of their mean token NLL),
    forget_examples, forget_tokens; frac_at_bound (lower_bounded); replay_tokens;
    bias_tokens; npo/simnpo add forget_logp (mean sequence log-prob). With
    forget_scope="pattern" every forget quantity is over the in-scope tokens and
    forget_target_tokens counts all target tokens; forgetting.lower_bounded_term lists the
    metrics of each bound form.
    """
    c = validate_loss_config(cfg)
    forget_kind, uses_replay, uses_bias = _TERMS[c["method"]]
    w_f, w_r, w_b = c["forget_weight"], c["replay_weight"], c["bias_weight"]
    want_replay = uses_replay and w_r > 0
    want_bias = uses_bias and w_b > 0
    method = c["method"]

    def need(value, what):
        if value is None:
            raise SynthflawError(f"loss method '{method}': needs {what} (or set its weight to 0)")
        return value

    def objective(
        forget_logits,
        forget_batch,
        replay_logits=None,
        replay_batch=None,
        *,
        forget_ref_logits=None,
        forget_ref_seq_logp=None,
        replay_ref_logits=None,
    ):
        metrics = {}
        if forget_kind is None:  # "lm": replay NLL only
            l_r, n_r = replay_loss(need(replay_logits, "replay_logits"), need(replay_batch, "replay_batch"))
            loss = w_r * l_r
            return loss, {"loss": loss, "replay_loss": l_r, "replay_tokens": n_r}
        scoped = forgetting.apply_scope(forget_batch, c["forget_scope"])
        lp = sequence_log_probs(forget_logits, scoped, max_segments)
        nll = ExampleStats(-lp.total, lp.count, lp.valid)
        metrics["forget_nll"] = masked_average(nll.mean, nll.valid)
        metrics["forget_examples"] = jnp.sum(jnp.asarray(nll.valid, jnp.float32))
        metrics["forget_tokens"] = jnp.sum(nll.count)

        if c["forget_scope"] != "all":
            metrics["forget_target_tokens"] = jnp.sum(shift_targets(
                forget_batch["input_ids"], forget_batch["loss_mask"], forget_batch.get("segment_ids"))[1])
        if forget_kind == "bounded":
            l_f, bound_metrics = forgetting.lower_bounded_term(
                c, forget_logits, scoped, nll, max_segments, forget_ref_logits
            )
            metrics.update(bound_metrics)
        elif forget_kind == "ga":
            l_f = ga_loss(nll.mean, nll.valid)
        elif forget_kind == "npo":
            if forget_ref_seq_logp is not None:
                ref_lp = jnp.asarray(forget_ref_seq_logp, jnp.float32)
            else:
                ref = need(forget_ref_logits, "forget_ref_logits or forget_ref_seq_logp")
                ref_lp = sequence_log_probs(
                    jax.lax.stop_gradient(ref), scoped, max_segments
                ).total
            l_f = npo_loss(lp.total, ref_lp, lp.valid, c["beta"])
            metrics["forget_logp"] = masked_average(lp.total, lp.valid)
        else:  # simnpo
            l_f = simnpo_loss(lp.total, lp.count, lp.valid, c["beta"], c["gamma"])
            metrics["forget_logp"] = masked_average(lp.total, lp.valid)
        metrics["forget_loss"] = l_f
        loss = w_f * l_f

        if want_replay:
            l_r, n_r = replay_loss(
                need(replay_logits, "replay_logits"), need(replay_batch, "replay_batch")
            )
            metrics["replay_loss"], metrics["replay_tokens"] = l_r, n_r
            loss = loss + w_r * l_r

        if want_bias:
            r_logits = need(replay_logits, "replay_logits")
            r_batch = need(replay_batch, "replay_batch")
            _, r_w, _ = shift_targets(
                r_batch["input_ids"], r_batch["loss_mask"], r_batch.get("segment_ids")
            )
            r_ref = need(replay_ref_logits, "replay_ref_logits")
            kl_sum, kl_n = masked_token_kl(r_logits, r_ref, r_w)
            if c["bias_on_forget_prompt"]:
                f_ref = need(forget_ref_logits, "forget_ref_logits (bias_on_forget_prompt)")
                p_sum, p_n = masked_token_kl(forget_logits, f_ref, prompt_weights(forget_batch))
                kl_sum, kl_n = kl_sum + p_sum, kl_n + p_n
            l_b = kl_sum / jnp.maximum(kl_n, 1.0)
            metrics["bias_loss"], metrics["bias_tokens"] = l_b, kl_n
            loss = loss + w_b * l_b

        metrics["loss"] = loss
        return loss, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    return objective


def total_loss(
    cfg: Any,
    forget_logits: Array,
    forget_batch: Batch,
    replay_logits: Array | None = None,
    replay_batch: Batch | None = None,
    *,
    max_segments: int | None = None,
    **refs: Array | None,
) -> tuple[Array, dict]:
    """One-shot `make_objective(cfg, max_segments)(forget_logits, ..., **refs)`."""
    return make_objective(cfg, max_segments)(
        forget_logits, forget_batch, replay_logits, replay_batch, **refs
    )


# Each weighted term of `make_objective` is an average over a count that depends on the batch
# alone (not on the logits): term metric -> (its weight field, the metric holding its count).
TERM_COUNTS = {
    "forget_loss": ("forget_weight", "forget_examples"),
    "replay_loss": ("replay_weight", "replay_tokens"),
    "bias_loss": ("bias_weight", "bias_tokens"),
}


def term_counts(cfg: Any) -> dict[str, tuple[str, str]]:
    """{term: (its weight's config field, the count it is an average over)} for this config:
    `TERM_COUNTS`, except that the unlikelihood form averages over in-scope forget tokens."""
    c = validate_loss_config(cfg)
    counts = dict(TERM_COUNTS)
    if c["method"] == "lower_bounded" and c["bound_form"] == "unlikelihood":
        counts["forget_loss"] = ("forget_weight", "forget_tokens")
    return counts


def objective_counts(
    cfg: Any, forget_batch: Batch | None, replay_batch: Batch | None, max_segments: int | None = None
) -> dict[str, Array]:
    """The counts `make_objective(cfg, max_segments)` divides its terms by, from the batches
    alone (no logits): forget_examples (valid forget examples) and forget_tokens (their
    target tokens), both within the forget scope, replay_tokens (replay target tokens),
    bias_tokens (the KL term's tokens). Gradient accumulation divides every
    microbatch's sums by these full-batch counts, so it computes the full-batch objective."""
    c = validate_loss_config(cfg)
    counts = {}
    if forget_batch is not None and c["method"] != "lm":
        scoped = forgetting.apply_scope(forget_batch, c["forget_scope"])
        _, w, seg = shift_targets(scoped["input_ids"], scoped["loss_mask"], scoped.get("segment_ids"))
        count = per_example_sum(jnp.ones_like(w), w, seg, max_segments)
        counts["forget_examples"] = jnp.sum(jnp.asarray(count > 0, jnp.float32))
        counts["forget_tokens"] = jnp.sum(count)
    if replay_batch is not None:
        _, w, _ = shift_targets(replay_batch["input_ids"], replay_batch["loss_mask"], replay_batch.get("segment_ids"))
        counts["replay_tokens"] = jnp.sum(w)
        bias = counts["replay_tokens"]
        if c["bias_on_forget_prompt"] and forget_batch is not None:
            bias = bias + jnp.sum(prompt_weights(forget_batch))
        counts["bias_tokens"] = bias
    return counts
