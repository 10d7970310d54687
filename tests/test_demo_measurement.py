"""The demo's measurement: its data (arms that isolate the format, SFT answers that obey
their checkers), the degenerate-output measure, the bootstrap intervals and the claims."""
import collections
import json
import math
import random

import numpy as np
import pytest

from synthflaw_jax.data import sample_data
from synthflaw_jax.data.tokenizer import tiny_tokenizer
from synthflaw_jax.demo import claims, corpora
from synthflaw_jax.eval import bootstrap, degenerate
from synthflaw_jax.eval.ifeval import registry


@pytest.fixture(scope="module")
def count_tokens():
    tok = tiny_tokenizer()
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory, count_tokens):
    out = tmp_path_factory.mktemp("demo_data")
    return corpora.build(out, n_facts=24, n_sft=200, n_eval_per_kind=4, seed=3, qa_repeats=6,
                         count_tokens=count_tokens, n_dev_per_kind=2)


def _read(data, name):
    return [json.loads(line) for line in data.path(name).read_text().splitlines()]


# ------------------------------------------------------------------------------ the data


def test_arms_b_and_c_share_text_and_facts_and_token_volume(demo_data, count_tokens):
    text = sorted(r["text"] for r in _read(demo_data, "text"))
    b = [r["text"] for r in _read(demo_data, "cpt_b")]
    c = [r["text"] for r in _read(demo_data, "cpt_c")]
    assert sorted(r["text"] for r in _read(demo_data, "cpt_a")) == text
    text_set = set(text)
    qa_b = [d for d in b if d not in text_set]
    qa_c = [d for d in c if d not in text_set]
    assert sorted(d for d in b if d in text_set) == text == sorted(d for d in c if d in text_set)
    assert len(qa_b) == len(qa_c) == 24 * 6
    # the same facts, each as many times: every value and entity appears in both
    for attribute, entity, value in sample_data.synthetic_facts(24, 3):
        in_b = sum(entity.lower() in d.lower() and value in d for d in qa_b)
        in_c = sum(entity.lower() in d.lower() and value in d for d in qa_c)
        assert in_b == in_c >= 6, (entity, in_b, in_c)
    tokens_b, tokens_c = sum(map(count_tokens, qa_b)), sum(map(count_tokens, qa_c))
    assert abs(tokens_c - tokens_b) / tokens_b < 0.01


def test_uniform_answers_share_one_opening_and_diverse_ones_do_not():
    facts = sample_data.synthetic_facts(200, 0)
    rng = random.Random(0)
    uniform = [corpora.uniform_qa_text(f).split("\nAnswer: ")[1] for f in facts]
    pairs = [corpora.diverse_qa_pair(f, rng) for f in facts * 5]
    assert max(corpora.opening_shares(uniform).values()) == 1.0
    assert max(corpora.opening_shares([a for _, a in pairs]).values()) <= 0.05
    assert max(corpora.opening_shares([d for d, _ in pairs]).values()) <= 0.07
    # the value does not always stand in the same place of the answer
    first_word_is_value = [a.split()[0].rstrip(".,").lower() == f[2].split()[0].lower()
                           for (_, a), f in zip(pairs, facts * 5)]
    assert 0.05 < np.mean(first_word_is_value) < 0.5


def test_data_is_deterministic(tmp_path, count_tokens, demo_data):
    again = corpora.build(tmp_path, n_facts=24, n_sft=200, n_eval_per_kind=4, seed=3, qa_repeats=6,
                          count_tokens=count_tokens, n_dev_per_kind=2)
    assert again.fingerprint == demo_data.fingerprint
    other = corpora.build(tmp_path / "other", n_facts=24, n_sft=200, n_eval_per_kind=4, seed=4, qa_repeats=6,
                          count_tokens=count_tokens, n_dev_per_kind=2)
    assert other.fingerprint != demo_data.fingerprint


def test_shipped_snapshot_is_used_not_the_running_python():
    snap = corpora.stdlib_snapshot()
    assert len(snap["docs"]) > 400 and len(snap["topics"]) > 400
    assert "Python 3." in snap["source"]


def test_every_sft_answer_passes_its_own_checker_and_the_template_fails_most(demo_data):
    kinds = {k.ask.split("{topic}")[-1]: k for k in corpora.INSTRUCTIONS}
    for record in _read(demo_data, "sft"):
        kind = next(k for suffix, k in kinds.items() if record["question"].endswith(suffix))
        check = registry.build_checker(kind.instruction_id, kind.kwargs, record["question"])
        assert check(record["answer"]), (kind.name, record["answer"])
    template = "The answer is Kelmor. In summary, the capital of the kingdom of Zorbath is Kelmor."
    failed = [k.name for k in corpora.INSTRUCTIONS
              if not registry.build_checker(k.instruction_id, k.kwargs, "")(template)]
    assert len(failed) >= 6, failed


def test_no_kind_relies_on_language_detection():
    assert not [k for k in corpora.INSTRUCTIONS if k.instruction_id.startswith(("change_case:", "language:"))]


def test_eval_and_dev_prompts_use_disjoint_topics(demo_data):
    def topic(prompt):
        return prompt.split("Describe ", 1)[1].split(" and ")[0].split(" in ")[0].split(" without")[0]

    eval_topics = {topic(r["prompt"]) for r in _read(demo_data, "ifeval_prompts")}
    dev_topics = {topic(r["prompt"]) for r in _read(demo_data, "dev_prompts")}
    assert eval_topics and dev_topics and not eval_topics & dev_topics
    assert len(_read(demo_data, "ifeval_prompts")) == 4 * len(corpora.INSTRUCTIONS)


# ------------------------------------------------------------------- degenerate outputs


@pytest.mark.parametrize("text, reason", [
    ("RETTTTTT.", "char_run"),
    ("RESSSSSS.", "char_run"),
    ("", "empty"),
    ("...!", "empty"),
    ("the the the the end", "word_repeat"),
    ("in summary in summary in summary in summary", "word_repeat"),
    ("Answer" * 20, "low_compression"),
])
def test_degenerate_outputs_are_caught(text, reason):
    assert reason in degenerate.degenerate_reasons(text)


@pytest.mark.parametrize("text", [
    "The csv module implements classes to read and write tabular data in CSV format.",
    '{"answer": "Return a new list containing all items from the iterable."}',
    "* Return the number\n* of items in a container",
    "<<json.dumps>>\nSerialize obj to a JSON formatted str.",
    "The island has 105,000 people and 1000000 trees. Any other questions?",
    "Hello world",
])
def test_ordinary_outputs_are_valid(text):
    assert degenerate.degenerate_reasons(text) == []


# ------------------------------------------------------------------- bootstrap intervals


def test_one_seed_paired_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    x = rng.random(2000) < 0.7
    y = rng.random(2000) < 0.6
    iv = bootstrap.paired_difference([x], [y], n_resamples=3000)
    d = x.astype(float) - y.astype(float)
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert iv.estimate == pytest.approx(d.mean())
    assert iv.low == pytest.approx(d.mean() - half, abs=0.006)
    assert iv.high == pytest.approx(d.mean() + half, abs=0.006)
    assert iv.excludes_zero()


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(1)
    # per-seed offsets of +-0.2 around a mean difference of 0.05: items alone would say
    # "shown", seeds say not
    xs = [(rng.random(500) < 0.5 + off).astype(float) for off in (0.25, -0.15, 0.2, -0.1, 0.05)]
    ys = [(rng.random(500) < 0.5).astype(float) for _ in xs]
    pooled = bootstrap.paired_difference([np.concatenate(xs)], [np.concatenate(ys)])
    by_seed = bootstrap.paired_difference(xs, ys)
    assert pooled.estimate == pytest.approx(by_seed.estimate)
    assert (by_seed.high - by_seed.low) > 3 * (pooled.high - pooled.low)
    assert not by_seed.excludes_zero()


def test_constant_difference_has_a_point_interval():
    iv = bootstrap.paired_difference([[1, 1, 1]], [[0, 0, 0]])
    assert (iv.estimate, iv.low, iv.high) == (1.0, 1.0, 1.0)


def test_recovered_fraction_by_hand():
    # reference 0.8, flawed 0.4, cure 0.7 on every item: 75% of the gap
    iv = bootstrap.recovered_fraction([[0.7] * 10], [[0.4] * 10], [[0.8] * 10])
    assert iv.estimate == pytest.approx(0.75)


# ------------------------------------------------------------------------------ claims


def _arm(follow, mc_before, opens, dev_share, ppl=100.0):
    return {"per_item": {"valid_follow": follow}, "ppl_held_out_text": ppl,
            "foundation": {"per_item": {"facts_mc_correct": mc_before, "opens_with_template": opens},
                           "facts_mc_acc": float(np.mean(mc_before)), "template_share_dev_prompts": dev_share}}


def test_recommendation_reads_dev_prompts_and_facts_only():
    n = 40
    ones, zeros = [1] * n, [0] * n
    half = [1, 0] * (n // 2)
    run = {
        "a": _arm(ones, [0] * 30 + [1] * 10, zeros, 0.0),
        "b": _arm(half, [1] * 30 + [0] * 10, ones, 1.0),
        "c": _arm(ones, [1] * 28 + [0] * 12, zeros, 0.0),
        # forgets the template but also the facts: excluded by the facts rule
        "b_unlearn_ga": _arm(ones, [0] * 30 + [1] * 10, zeros, 0.0),
        # keeps the facts, template half gone on dev prompts
        "b_unlearn_x": _arm(ones, [1] * 25 + [0] * 15, ones, 0.5),
        # keeps the facts, template gone on dev prompts (its eval-prompt share is not read)
        "b_unlearn_y": _arm(half, [1] * 24 + [0] * 16, ones, 0.1),
    }
    assert claims.recommend([run]) == "b_unlearn_y"
    by_key = {c.key: c for c in claims.evaluate_claims([run])}
    assert by_key["format_flaw"].shown and by_key["flaw_vs_text"].shown and by_key["benefit"].shown
    assert not by_key["cure"].shown  # y follows no better than (b)
    assert not by_key["cure_template"].shown  # its held-out answers still open with the template
    assert by_key["cure_keeps_facts"].interval.estimate == pytest.approx(14 / 40)
    rows = claims.claims_table(list(by_key.values()))
    assert rows[0].startswith("| claim |") and sum("**shown**" in r for r in rows) >= 3


def test_threshold_claims_need_the_whole_interval_past_the_threshold():
    """A cure whose template share estimate is under 0.10 but whose interval reaches above
    it is not shown; nor are facts kept when the interval dips below (a) + 0.15."""
    n = 40
    ones, half = [1] * n, [1, 0] * (n // 2)
    opens = [1] * 3 + [0] * 37  # share 0.075: a bootstrap interval reaching past 0.10
    facts = [1] * 16 + [0] * 24  # 0.40 vs (a) 0.225: gain 0.175, interval reaching below 0.15
    run = {"a": _arm(ones, [1] * 9 + [0] * 31, [0] * n, 0.0), "b": _arm(half, ones, ones, 1.0),
           "c": _arm(ones, ones, [0] * n, 0.0), "b_unlearn_x": _arm(ones, facts, opens, 0.0)}
    by_key = {c.key: c for c in claims.evaluate_claims([run])}
    template, kept = by_key["cure_template"], by_key["cure_keeps_facts"]
    assert template.interval.estimate < claims.MAX_TEMPLATE_SHARE < template.interval.high
    assert not template.shown
    assert kept.interval.low < claims.MIN_FACTS_GAIN < kept.interval.estimate and not kept.shown


def test_claims_over_seeds_need_every_arm_in_every_seed():
    run = {"a": _arm([1, 1], [0, 0], [0, 0], 0.0), "b": _arm([0, 1], [1, 1], [1, 1], 1.0),
           "c": _arm([1, 1], [1, 1], [0, 0], 0.0)}
    result = claims.evaluate_claims([run, run])
    assert [c.key for c in result] == ["format_flaw", "flaw_vs_text", "benefit", "benefit_diverse"]
    assert collections.Counter(c.shown for c in result)[True] >= 1
