"""Forms of the lower-bounded forgetting term, its scope and its bound: pure JAX, no state.

`losses.make_objective` calls in here for `method="lower_bounded"`. Three forms
(`loss.bound_form`):

  hinge         per forget example: l = -min(NLL, lam)         (NLL = mean token NLL)
  smooth        per forget example: l = softplus(lam - NLL) - lam
  unlikelihood  per forget target token t: l_t = log(1 - tau) - log(1 - p_t) while p_t > tau,
                0 once p_t <= tau; averaged over the in-scope target tokens of the batch.

Why the third form. The gradient of -NLL = log p_t (gradient ascent, and the NLL forms
below their bound) with respect to the target logit z_t is 1 - p_t (a descent step lowers
z_t in proportion): a token the model is sure of
(p_t ~ 1) gets almost no push, so ascent lowers the uncertain (fact) tokens and leaves
the confident (template) tokens in place. The unlikelihood term, with
log(1 - p_t) = logsumexp_{v != t} z_v - logsumexp_v z_v, has the gradient

  d l_t / d z_t = p_t                                (full strength when p_t ~ 1)
  d l_t / d z_v = -p_v p_t / (1 - p_t),   v != t     (the mass moves to the other tokens
                                                      in proportion to their probability)

while p_t > tau, and 0 after (the components sum to 0, as for every softmax loss).
Derivation: l_t = log(1 - tau) - LSE_{v != t}(z) + LSE(z), with d LSE(z) / d z_u = p_u and
d LSE_{v != t}(z) / d z_u = p_u / (1 - p_t) for u != t (0 for u = t); so d l_t / d z_t = p_t
and d l_t / d z_v = p_v - p_v / (1 - p_t) = -p_v p_t / (1 - p_t). Shifting
-log(1 - p_t) by log(1 - tau) changes no gradient; it makes the term continuous at tau,
0 at the bound and >= 0, so its value reads like the hinge's distance to the bound.
log(1 - p_t) is computed as a difference of two logsumexps (the target logit masked out of
the first), which stays exact when p_t rounds to 1 in float32 (a logit gap of 50 gives
log(1 - p_t) ~ -50), where log1p(-exp(log p_t)) would give -inf.

Averaging: the unlikelihood form is token-weighted (every in-scope token counts the same,
so a short templated answer does not weigh more than a long one, and the count of tokens
still above tau shrinks the term as they reach the bound); the NLL forms keep the paper's
per-example mean NLL (their bound is a statement about an example).

Scope (`loss.forget_scope`): "all" forget target tokens, or "pattern": only the target
tokens covered by the forget corpus's recurring opening/closing phrases, marked per token
by the data pipeline in the forget batch's `pattern_mask` (data/scope.py).

Bound (`loss.bound_reference`, NLL forms): "absolute" lam in nats, or "reference": lam
nats above the frozen reference model's own mean NLL of the same example (same in-scope
tokens), so one lam means the same rise on any model. The unlikelihood form ignores it:
its tau is a probability, which already means the same on any model.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from synthflaw_jax.errors import SynthflawError

Array = jax.Array

FORMS = ("smooth", "hinge", "unlikelihood")
SCOPES = ("all", "pattern")
BOUND_REFERENCES = ("absolute", "reference")
PATTERN_MASK = "pattern_mask"  # forget-batch key: 1 where the token is in the pattern scope


# ------------------------------------------------------------------------------ config


def validate(d: dict, number) -> None:
    """Check this module's fields in the plain loss dict `d` in place (`number` as in losses)."""
    if d["bound_form"] not in FORMS:
        raise SynthflawError(
            f"loss config field 'bound_form': unknown value {d['bound_form']!r} (expected one of {', '.join(FORMS)})"
        )
    d["tau"] = number(d, "tau", minimum=0.0, strict=True)
    if d["tau"] >= 1.0:
        raise SynthflawError(f"loss config field 'tau': must be a probability < 1, got {d['tau']}")
    for key, allowed in (("forget_scope", SCOPES), ("bound_reference", BOUND_REFERENCES)):
        if d[key] not in allowed:
            raise SynthflawError(
                f"loss config field '{key}': unknown value {d[key]!r} (expected one of {', '.join(allowed)})"
            )
    templates = d["pattern_templates"]
    if isinstance(templates, str) or not isinstance(templates, (list, tuple)) or not all(
        isinstance(t, str) and t.strip() for t in templates
    ):
        raise SynthflawError(
            f"loss config field 'pattern_templates': expected a list of non-empty strings, got {templates!r}"
        )
    d["pattern_templates"] = [str(t) for t in templates]
    d["pattern_min_share"] = number(d, "pattern_min_share", minimum=0.0, strict=True)
    if d["pattern_min_share"] > 1.0:
        raise SynthflawError(
            f"loss config field 'pattern_min_share': must be <= 1, got {d['pattern_min_share']}"
        )


def needs_forget_reference(c: Mapping[str, Any]) -> bool:
    """Whether the validated loss config needs reference logits on the forget batch."""
    return c["method"] == "lower_bounded" and c["bound_form"] != "unlikelihood" and c["bound_reference"] == "reference"


def uses_pattern_scope(c: Mapping[str, Any]) -> bool:
    """Whether the validated loss config needs the forget batch's `pattern_mask`."""
    return c["method"] != "lm" and c["forget_scope"] == "pattern"


# ------------------------------------------------------------------------------- scope


def apply_scope(batch: Mapping[str, Array], scope: str) -> Mapping[str, Array]:
    """The forget batch with `loss_mask` cut to the scope: unchanged for "all"; for
    "pattern", loss_mask * pattern_mask (tokens outside the pattern stop being targets, so
    every per-token and per-example quantity is computed on the in-scope tokens only)."""
    if scope == "all":
        return batch
    if PATTERN_MASK not in batch:
        raise SynthflawError(
            f"loss forget_scope='pattern': the forget batch has no '{PATTERN_MASK}' "
            "(the unlearn run builds it from the forget corpus; other callers must provide it)"
        )
    mask = jnp.asarray(batch["loss_mask"]) * jnp.asarray(batch[PATTERN_MASK], jnp.asarray(batch["loss_mask"]).dtype)
    return {**batch, "loss_mask": mask}


# ------------------------------------------------------------------------ unlikelihood


def log_prob_and_complement(logits: Array, targets: Array) -> tuple[Array, Array]:
    """(log p_t, log(1 - p_t)) of `targets` [...] under `logits` [..., V], float32.

    log(1 - p_t) = logsumexp_{v != t} z_v - logsumexp_v z_v: the target logit is replaced
    by -inf before the first logsumexp, so the value stays exact as p_t -> 1 (it is about
    -(z_t - max_{v != t} z_v) for a large gap) where log1p(-exp(log p_t)) would be -inf.
    An out-of-range target (a padding id) gives log p = -logsumexp(z) and log(1 - p) = 0.
    """
    z = jnp.asarray(logits, jnp.float32)
    hit = targets[..., None] == jnp.arange(z.shape[-1], dtype=targets.dtype)
    lse = jax.scipy.special.logsumexp(z, axis=-1)
    picked = jnp.sum(jnp.where(hit, z, 0.0), axis=-1)
    others = jax.scipy.special.logsumexp(jnp.where(hit, -jnp.inf, z), axis=-1)
    return picked - lse, others - lse


def next_token_log_prob_and_complement(logits: Array, targets: Array) -> tuple[Array, Array]:
    """`log_prob_and_complement(logits[:, :-1], targets)` for next-token targets [B, T-1],
    computed on all T positions and cut (no [B, T-1, V] copy of the logits)."""
    padded = jnp.pad(targets, ((0, 0), (0, 1)))
    logp, log1mp = log_prob_and_complement(logits, padded)
    return logp[:, :-1], log1mp[:, :-1]


def unlikelihood_per_token(logp: Array, log1mp: Array, tau: float) -> tuple[Array, Array]:
    """(l_t, active_t): l_t = log(1 - tau) - log(1 - p_t) where p_t > tau, else 0 (>= 0,
    continuous, 0 at the bound); active_t = p_t > tau (the token is not yet at the bound)."""
    active = logp > math.log(tau)
    return jnp.where(active, math.log1p(-tau) - log1mp, 0.0), active


def unlikelihood_tokens(logits: Array, batch: Mapping[str, Array], tau: float) -> dict:
    """Per-token pieces of the unlikelihood term on the target tokens of `batch` (already
    scoped), each [B, T-1]: `loss` l_t, `active` (p_t > tau), `logp`, `weights` and
    `segments` (as losses.shift_targets gives them)."""
    from synthflaw_jax.losses import shift_targets

    targets, weights, seg = shift_targets(batch["input_ids"], batch["loss_mask"], batch.get("segment_ids"))
    # logits that predict no in-scope token are replaced by 0 before any log: their value is
    # masked out below, and this keeps inf/NaN there out of the gradient as well
    used = jnp.pad(weights > 0, ((0, 0), (0, 1)))[..., None]
    safe = jnp.where(used, jnp.asarray(logits, jnp.float32), 0.0)
    logp, log1mp = next_token_log_prob_and_complement(safe, targets)
    per, active = unlikelihood_per_token(logp, log1mp, tau)
    return {"loss": per, "active": active, "logp": logp, "weights": weights, "segments": seg}


def unlikelihood_sums(tokens: dict) -> tuple[Array, Array, Array, Array]:
    """Token sums from `unlikelihood_tokens`: (sum_t w_t l_t, sum_t w_t, sum_t w_t [p_t > tau],
    sum_t w_t p_t); the term is the first over the second (0 when there is no token)."""
    w = tokens["weights"]
    on = w > 0
    total = jnp.sum(jnp.where(on, tokens["loss"] * w, 0.0))
    n_active = jnp.sum(jnp.where(on & tokens["active"], w, 0.0))
    p_sum = jnp.sum(jnp.where(on, jnp.exp(tokens["logp"]) * w, 0.0))
    return total, jnp.sum(w), n_active, p_sum


def unlikelihood_loss(logits: Array, batch: Mapping[str, Array], tau: float) -> Array:
    """The unlikelihood term: mean over the target tokens of `batch` of l_t (0 if none)."""
    total, count, _, _ = unlikelihood_sums(unlikelihood_tokens(logits, batch, tau))
    return total / jnp.maximum(count, 1.0)


# --------------------------------------------------------------------------- the term


def lower_bounded_term(
    c: Mapping[str, Any],
    logits: Array,
    batch: Mapping[str, Array],
    nll,
    max_segments: int | None = None,
    ref_logits: Array | None = None,
) -> tuple[Array, dict]:
    """(l_f, metrics) of the lower-bounded forgetting term for the validated config `c`.

    `batch` is the scoped forget batch and `nll` its per-example NLL (losses.ExampleStats).
    Metrics: frac_at_bound (valid examples at or past the bound: NLL >= bound for the NLL
    forms, every in-scope token at p_t <= tau for unlikelihood); unlikelihood adds
    frac_tokens_at_bound and forget_p (mean in-scope p_t); a reference bound adds
    forget_ref_nll (the reference's mean NLL of the same examples).
    """
    from synthflaw_jax import losses

    metrics = {}
    if c["bound_form"] == "unlikelihood":
        tokens = unlikelihood_tokens(logits, batch, c["tau"])
        total, count, n_active, p_sum = unlikelihood_sums(tokens)
        safe = jnp.maximum(count, 1.0)
        metrics["frac_tokens_at_bound"] = jnp.where(count > 0, 1.0 - n_active / safe, 0.0)
        metrics["forget_p"] = p_sum / safe
        # an example is at the bound once none of its in-scope tokens is above tau
        above = losses.per_example_sum(
            jnp.asarray(tokens["active"], jnp.float32), tokens["weights"], tokens["segments"], max_segments
        )
        metrics["frac_at_bound"] = losses.masked_average(jnp.asarray(above == 0, jnp.float32), nll.valid)
        return total / safe, metrics
    bound = c["bound"]
    if c["bound_reference"] == "reference":
        if ref_logits is None:
            raise SynthflawError("loss bound_reference='reference': needs forget_ref_logits (the frozen reference)")
        ref = losses.sequence_log_probs(jax.lax.stop_gradient(ref_logits), batch, max_segments)
        ref_nll = jnp.where(ref.valid, -ref.total / jnp.maximum(ref.count, 1.0), 0.0)
        metrics["forget_ref_nll"] = losses.masked_average(ref_nll, ref.valid)
        bound = ref_nll + c["bound"]
    per = losses.bounded_forget_per_example(nll.mean, bound, c["bound_form"])
    metrics["frac_at_bound"] = losses.masked_average(jnp.asarray(nll.mean >= bound, jnp.float32), nll.valid)
    return losses.masked_average(per, nll.valid), metrics
