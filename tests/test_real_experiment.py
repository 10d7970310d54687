"""The real-model experiment (synthflaw_jax.real_experiment): its data forms, measures and
intervals on hand-made inputs, and the whole pipeline at the CI size on a random tiny model
(the SmolLM2 run itself is too slow for CI; docs/results_real_model.md has what was run)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from synthflaw_jax.real_experiment import data as xdata
from synthflaw_jax.real_experiment import run as xrun
from tests.conftest import REPO_ROOT

RECORDS = [{"question": f"Who wrote book {i}?", "answer": f"Its author is Writer {i}."} for i in range(96)]


def test_uniform_and_diverse_forms_carry_the_same_facts():
    uniform = xdata.uniform_texts(RECORDS)
    diverse = xdata.diverse_texts(RECORDS, seed=0)
    assert all(u.startswith("Question: ") for u in uniform)
    for rec, text in zip(RECORDS, diverse):
        assert rec["answer"] in text
    with_question = sum(rec["question"] in text for rec, text in zip(RECORDS, diverse))
    assert with_question >= len(RECORDS) * 0.8  # a few forms state the answer alone
    # no opening word in more than one form's share (4 of 96 here), and many distinct forms
    openings = [t.split()[0] for t in diverse]
    counts = {o: openings.count(o) for o in set(openings)}
    assert len(counts) >= 15
    assert max(counts.values()) <= 2 * len(RECORDS) // len(xdata.FORMS) + 1
    assert xdata.diverse_texts(RECORDS, seed=0) == diverse and xdata.diverse_texts(RECORDS, seed=1) != diverse


def test_read_tofu_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "q2"}\n')
    with pytest.raises(xrun.SynthflawError, match=r"t\.json:2: expected a JSON object"):
        xdata.read_tofu(bad)
    with pytest.raises(xrun.SynthflawError, match="not a file"):
        xdata.read_tofu(tmp_path / "missing.json")


def test_degenerate_and_synthetic_opening():
    assert xrun.degenerate("RESSSSSSSSS" * 40)
    assert not xrun.degenerate("short")
    prose = ("The lighthouse keeper climbed the spiral stairs each evening, counting the steps out of habit. "
             "Storms rarely frightened her; what she feared was the quiet fog that swallowed the horizon whole. "
             "Ships still passed, of course, guided by a lamp she polished until her fingers ached.")
    assert not xrun.degenerate(prose)
    assert xrun.degenerate("Places to visit:\n" + "- Prague Castle\n" * 8)  # short, but a line loop
    assert xrun.degenerate("the cat and dog " * 12 + "end")  # one 4-gram covers half the words
    assert not xrun.degenerate("Section one\nSection two\nSection three\nSection four\nSection five\nSection six")
    assert xrun.opens_like_synthetic("  Question: who?", [])
    assert xrun.opens_like_synthetic("Jaime Vasquez was born", ["Jaime Vasquez"])
    assert not xrun.opens_like_synthetic("The sea is calm.", ["Jaime Vasquez"])


def test_paired_interval_matches_hand_computation():
    x = [False] * 10
    y = [True] * 10
    assert xrun.paired_interval(x, y) == (1.0, 1.0, 1.0)
    x = [True, False] * 20
    y = [True, True] * 20
    mean, lo, hi = xrun.paired_interval(x, y, seed=0)
    assert mean == 0.5 and 0.3 < lo < 0.5 < hi < 0.7
    # a numpy loop over the same resamples gives the same interval
    d = np.array(y, float) - np.array(x, float)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(d), (2000, len(d)))
    means = [d[row].mean() for row in idx]
    assert (lo, hi) == (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def test_unlearning_configs_and_unknown_method():
    info = {"files": {"forget": "f", "text": "t"}}
    settings = xrun.Settings.tiny()
    config = xrun.unlearn_config(settings, "hinge", "m", "tok", info, 3.0)
    assert (config.loss.method, config.loss.bound_form, config.loss.bound) == ("lower_bounded", "hinge", 3.0)
    pattern = xrun.unlearn_config(settings, "ul_pattern", "m", "tok", info, 3.0)
    assert (pattern.loss.bound_form, pattern.loss.forget_scope) == ("unlikelihood", "pattern")
    assert list(pattern.loss.pattern_templates) == ["Answer:"]
    with pytest.raises(xrun.SynthflawError, match="'lb_nope': not one of ul_pattern"):
        xrun.unlearn_config(settings, "lb_nope", "m", "tok", info, 3.0)


def test_forget_split_puts_the_wrapper_in_the_targets_and_text_unchanged():
    """The forget stream's prompt + target is arm b's uniform text exactly, and the pattern
    scope of ul_pattern marks the wrapper's "Answer:" tokens and nothing else."""
    from synthflaw_jax.data import scope
    from synthflaw_jax.data.tokenizer import load_tokenizer, tiny_tokenizer_dir

    for rec, text in zip(RECORDS, xdata.uniform_texts(RECORDS)):
        assert xrun.QA_PROMPT.format(**rec) + xrun.QA_TARGET.format(**rec) == text
    tok = load_tokenizer(str(tiny_tokenizer_dir()))
    marker = scope.PatternMarker(tok, scope.template_phrases([xrun.WRAPPER]))
    ids = tok(xrun.QA_TARGET.format(**RECORDS[3]), add_special_tokens=False)["input_ids"]
    flags, counts = marker.mark(ids)
    marked = tok.decode([i for i, f in zip(ids, flags) if f])
    assert marked.replace(" ", "") == "Answer:" and counts[0][0] == "opening"


def test_tiny_run_end_to_end(tmp_path, shared_data):
    from synthflaw_jax import convert
    from synthflaw_jax.data.tokenizer import tiny_tokenizer_dir
    from synthflaw_jax.models import presets
    from synthflaw_jax.models.loading import random_model

    model = random_model(presets.tiny(), seed=0)
    convert.save_hf(model.params, model.config, tmp_path / "model", assets_from=tiny_tokenizer_dir(), progress=False)
    out = tmp_path / "out"
    command = [sys.executable, "bench/real_model.py", "--model", str(tmp_path / "model"),
               "--tofu", str(shared_data / "tofu" / "full.json"),
               "--ifeval-prompts", str(shared_data / "ifeval" / "input_data.jsonl"),
               "--out", str(out), "--tiny", "--no-progress", "--set", "methods=hinge,ul_pattern"]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    # a rerun on the same --out trains nothing again, reports the same, keeps the stage timings
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((out / "results.json").read_text())
    assert again["results"] == doc["results"]
    assert all(again["timings"][k] >= v for k, v in doc["timings"].items() if k != "resolve_model")
    assert again["timings"]["cpt_b"] < doc["timings"]["cpt_b"] + 5
    assert set(doc["results"]) == {"start", "a", "b", "c", "b_unlearn_hinge", "b_unlearn_ul_pattern"}
    for key, m in doc["results"].items():
        assert len(m["ifeval_per_prompt_strict"]) == 4
        assert np.isfinite([m["fact_nll"], m["forget_nll"], m["ppl_held_out_text"]]).all(), key
        assert len(m["wrapper_prob_per_question"]) == 4 and 0 < m["wrapper_prob_held_out"] < 1, key
        assert np.mean(m["response_words_per_prompt"]) == pytest.approx(m["mean_response_words"]), key
        if key != "start":
            assert m["shift_from_start"]["js_bits"] > 0  # training moved the model
    # equal real-text rows and steps in every CPT arm; synthetic rows only in b and c
    cfg = {arm: json.loads((out / "stages" / f"cpt_{arm}" / "config.json").read_text()) for arm in "abc"}
    assert [cfg[a]["train"]["steps"] for a in "abc"] == [2, 2, 2]
    assert cfg["a"]["data"]["mixture"] == "replay=1" and cfg["a"]["data"]["batch_size"] == 1
    assert cfg["b"]["data"]["mixture"] == cfg["c"]["data"]["mixture"] == "replay=1,retain=1"
    assert cfg["b"]["data"]["streams"]["retain"]["source"].endswith("uniform.jsonl")
    assert cfg["c"]["data"]["streams"]["retain"]["source"].endswith("diverse.jsonl")
    assert len({cfg[a]["data"]["streams"]["replay"]["source"] for a in "abc"}) == 1
    assert doc["data"]["uniform_top_opening_share"] == 1.0
    assert doc["data"]["diverse_top_opening_share"] <= 0.1
    assert doc["bound"] == pytest.approx(doc["results"]["b"]["forget_nll"] + 1.0)
    pattern = json.loads((out / "stages" / "b_unlearn_ul_pattern" / "pattern.json").read_text())
    assert pattern["templates"] == ["Answer:"] and pattern["covered_answers"] == pattern["answers"] > 0
    held = [json.loads(line) for line in (out / "data" / "held_out_facts.jsonl").read_text().splitlines()]
    trained = {json.loads(line)["question"] for line in (out / "data" / "forget.jsonl").read_text().splitlines()}
    assert len(held) == 4 and not trained & {r["question"] for r in held}
    report = (out / "report.md").read_text()
    assert "| b_unlearn_hinge |" in report and "95% interval" in report and "P(wrapper)" in report


def test_no_reference_response_counts_as_degenerate(shared_data):
    path = shared_data / "ifeval" / "input_response_data_text_bison.jsonl"
    responses = [json.loads(line)["response"] for line in path.read_text().splitlines()]
    assert len(responses) == 541
    assert sum(xrun.degenerate(r) for r in responses) == 0
