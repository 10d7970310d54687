"""Conformance on the published IFEval data: the PaLM 2 (text-bison) responses.

Three checks:
1. Our per-instruction results equal those of the published reference implementation,
   run independently (tests/data/ifeval/reference_text_bison_e4c89b64.json says how).
2. Our four accuracies are within a justified tolerance of that run, and we record
   how both compare with the IFEval paper's PaLM 2 S figures.
3. A sample of responses whose per-instruction results were verified by hand.
"""
import json
import pathlib

import pytest

from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.eval.ifeval import evaluate_files

# IFEval paper (Zhou et al. 2023, arXiv:2311.07911), Table "PaLM 2 S" row, as listed at
# https://paperswithcode.com/paper/instruction-following-evaluation-for-large
# ("Results from the Paper": PaLM 2 S prompt-level strict 43.07, inst-level strict 55.76,
# prompt-level loose 46.95, inst-level loose 59.11).
PAPER_PALM2_S = {
    "prompt_level_strict_acc": 0.4307,
    "inst_level_strict_acc": 0.5576,
    "prompt_level_loose_acc": 0.4695,
    "inst_level_loose_acc": 0.5911,
}
KEYS = tuple(PAPER_PALM2_S)

# Tolerance against the reference run. Everything but sentence counting is the same
# rule as the reference; sentences use our Punkt stand-in, which agreed with NLTK's
# Punkt English model on 4304 of 4328 response variants (all 8 loose variants of the
# 541 responses) and flipped none of the 36 number_sentences instructions here. We allow
# up to 2 flipped instructions: 2/541 = 0.37 points prompt-level, 2/747 = 0.27 points
# instruction-level, so 0.005 on each fraction.
TOLERANCE = 0.005
MAX_FLIPPED_INSTRUCTIONS = 2

REFERENCE_FILE = pathlib.Path(__file__).parent / "data" / "ifeval" / "reference_text_bison_e4c89b64.json"


@pytest.fixture(scope="module")
def scored(shared_data):
    d = shared_data / "ifeval"
    return evaluate_files(
        d / "input_data_v20231114_e4c89b64.jsonl", d / "input_response_data_text_bison.jsonl"
    )


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE_FILE.read_text())["results"]


def _reference_metrics(reference):
    strict = [v["strict"] for v in reference.values()]
    loose = [v["loose"] for v in reference.values()]
    n_inst = sum(len(s) for s in strict)
    return {
        "prompt_level_strict_acc": sum(all(s) for s in strict) / len(strict),
        "inst_level_strict_acc": sum(sum(s) for s in strict) / n_inst,
        "prompt_level_loose_acc": sum(all(s) for s in loose) / len(loose),
        "inst_level_loose_acc": sum(sum(s) for s in loose) / n_inst,
    }


def test_per_instruction_results_match_the_reference_implementation(scored, reference):
    metrics, results = scored
    assert len(results) == len(reference) == 541
    flipped = {"strict": 0, "loose": 0}
    for r in results:
        ref = reference[str(r.key)]
        for mode in flipped:
            ours = list(getattr(r, mode))
            assert len(ours) == len(ref[mode])
            flipped[mode] += sum(a != b for a, b in zip(ours, ref[mode]))
    assert flipped["strict"] <= MAX_FLIPPED_INSTRUCTIONS
    assert flipped["loose"] <= MAX_FLIPPED_INSTRUCTIONS


def test_accuracies_next_to_the_reference_and_the_paper(scored, reference):
    metrics, _ = scored
    ref = _reference_metrics(reference)
    # The reference run gave 67.84 / 73.49 / 70.98 / 76.44 (%).
    assert ref["prompt_level_strict_acc"] == pytest.approx(367 / 541)
    assert ref["inst_level_strict_acc"] == pytest.approx(549 / 747)
    for k in KEYS:
        assert metrics[k] == pytest.approx(ref[k], abs=TOLERANCE), k
    # The paper's PaLM 2 S figures are 21-25 points lower than what the published
    # reference code itself gives on this response file: the file (text-bison, published
    # 2023-11 and removed upstream 2023-12-15) is evidently not the run behind the paper's
    # table. The gap is in the responses, not the checker, so we do not tune to the paper.
    for k in KEYS:
        assert ref[k] - PAPER_PALM2_S[k] > 0.15, k


# Verified by hand from the prompt, kwargs and response (key: (strict, loose)).
HAND_VERIFIED = {
    # "**...help with?**": the '**' after the phrase fails strict; removing '*' passes
    1446: ([False], [True]),
    # l in "The panda is a big animal. ... It lives in the bamboo forests ..." = 3 < 6
    2107: ([False], [False]),
    # 2 sentences < 6
    2780: ([True], [True]),
    # "engaged", "light-hearted": neither "engages" nor "lightly" occurs
    2662: ([False], [False]),
    # no *** divider -> 1 paragraph; "precinct" 0 times < 1
    127: ([True, True], [True, True]),
    # "I FROZE ON THE SPOT." -> 5 capital words < 16
    3414: ([True], [True]),
    # "acceptable" / "grammatical" around ******
    2383: ([True], [True]),
    # ~25 words < 196; title <<A Cold>>
    3442: ([True, True], [True, True]),
    # three lines start with "* " -> exactly 3
    2314: ([True], [True]),
    # [material] [temperature] [feeling]
    1927: ([True], [True]),
    # a line "P.P.S. I hope ..."
    2362: ([True], [True]),
    # six **bold** lines >= 2 highlights
    3549: ([True], [True]),
    # SECTION 1..3 (the "BONUS SECTION" has no number) -> 3 >= 3
    2925: ([True], [True]),
    # ```json fence with valid JSON; neither forbidden word
    1242: ([True, True], [True, True]),
    # starts with "Name a new type of tonic." (the request before the repeat sentence)
    3272: ([True], [True]),
    # starts and ends with a double quote
    2239: ([True], [True]),
    # "2, 2^0, 2^1, ..." has commas on its only line
    1738: ([False], [False]),
    # starts with the quoted sentence, not with the request "When giving a class/lecture ..."
    2192: ([False], [False]),
    # starts with "The man", not with a quote
    2829: ([False], [False]),
    # one paragraph then a trailing *** (empty last piece is dropped) -> 1 != 2, all variants
    2921: ([False], [False]),
    # 4 bullet lines (the first glued to the prompt's example); dropping the last line -> 3
    2100: ([False], [True]),
    # six "N. Sentence." items: Punkt makes "1." ... "6." sentences of their own -> 12 >= 7
    2266: ([False], [False]),
    # 3 paragraphs and first word "**realising**"; without the last line and '*': 2, "realising"
    2215: ([False], [True]),
}


def test_hand_verified_sample(scored):
    _, results = scored
    by_key = {r.key: r for r in results}
    for key, (strict, loose) in HAND_VERIFIED.items():
        r = by_key[key]
        assert (list(r.strict), list(r.loose)) == (strict, loose), key


def test_current_prompts_do_not_match_the_old_responses(shared_data):
    # 385 of 541 prompts were reworded after these responses were written (data README).
    d = shared_data / "ifeval"
    with pytest.raises(SynthflawError, match=r"385 of 541 prompts have no response"):
        evaluate_files(d / "input_data.jsonl", d / "input_response_data_text_bison.jsonl")


def test_current_prompt_file_validates(shared_data):
    from synthflaw_jax.eval.ifeval import load_prompts

    records = load_prompts(shared_data / "ifeval" / "input_data.jsonl")
    assert len(records) == 541
    assert sum(len(r.instruction_id_list) for r in records) == 834  # as the data README says
