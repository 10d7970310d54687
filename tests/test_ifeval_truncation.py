"""bench/ifeval_truncation.py: when every cut prompt is sampled, its estimate of the long
run's score must equal the score of the short responses with the cut ones replaced by
their long regenerations, scored independently here."""
import importlib.util
import json

import numpy as np
import pytest

from synthflaw_jax.eval.ifeval import io, runner, scoring
from tests.conftest import REPO_ROOT
from tests.helpers import write_tiny_hf


def _bench_module():
    spec = importlib.util.spec_from_file_location("ifeval_truncation", REPO_ROOT / "bench" / "ifeval_truncation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_sample_estimate_equals_the_merged_score(tmp_path):
    model = write_tiny_hf(tmp_path, seed=3)
    prompts = io.default_prompts_path()
    runner.run(tmp_path / "short", prompts_path=prompts, model_path=str(model),
               gen_kwargs={"max_new_tokens": 6, "batch_size": 8})
    bench = _bench_module()
    assert bench.main(["--short-out", str(tmp_path / "short"), "--model", str(model), "--max-new-tokens", "6",
                       "--long-max-new-tokens", "14", "--sample", "100000", "--batch-size", "8",
                       "--out", str(tmp_path / "check")]) == 0
    estimate = json.loads((tmp_path / "check" / "estimate.json").read_text())
    records = io.load_prompts(prompts)
    assert estimate["cut_at_short"] == estimate["sampled"] > 0

    short = io.load_responses(tmp_path / "short" / runner.RESPONSES_FILE)
    long = io.load_responses(tmp_path / "check" / "long" / runner.RESPONSES_FILE)
    assert set(long) <= set(short) and len(long) == estimate["sampled"]
    assert any(long[p] != short[p] for p in long)  # the long limit wrote more
    merged = [long.get(r.prompt, short[r.prompt]) for r in records]
    results = scoring.score(records, merged)
    n_inst = sum(len(r.instruction_id_list) for r in records)
    expected = {"prompt_strict": np.mean([r.follow_all_strict for r in results]),
                "prompt_loose": np.mean([r.follow_all_loose for r in results]),
                "inst_strict": sum(sum(r.strict) for r in results) / n_inst,
                "inst_loose": sum(sum(r.loose) for r in results) / n_inst}
    for key, value in expected.items():
        assert estimate[key]["estimate_long"] == pytest.approx(value, abs=1e-12), key
        lo, hi = estimate[key]["interval_95"]
        assert lo <= estimate[key]["estimate_long"] + 1e-12 and hi >= estimate[key]["estimate_long"] - 1e-12
