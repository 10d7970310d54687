"""Strict vs loose checking and metric aggregation, on hand-computed cases."""
import pytest

from synthflaw_jax.eval.ifeval import PromptRecord, compute_metrics, response_variants, score, validate


def record(key, ids_kwargs, prompt="p"):
    ids = tuple(i for i, _ in ids_kwargs)
    args = tuple(validate(i, kw, prompt) for i, kw in ids_kwargs)
    return PromptRecord(key=key, prompt=f"{prompt} {key}", instruction_id_list=ids, args=args)


def test_response_variants_in_reference_order():
    assert response_variants("A*\nB\nC*") == [
        "A*\nB\nC*",  # the response
        "A\nB\nC",  # without '*'
        "B\nC*",  # without first line
        "A*\nB",  # without last line
        "B",  # without both
        "B\nC",  # without first line, no '*'
        "A\nB",  # without last line, no '*'
        "B",  # without both, no '*'
    ]


@pytest.mark.parametrize(
    "iid,kwargs,response,strict,loose",
    [
        # the first line is a preamble: dropping it leaves a quoted response
        ("startend:quotation", {}, 'Sure! Here it is:\n"Keep it clean."', False, True),
        # a closing line after the end phrase: dropping the last line fixes it
        ("startend:end_checker", {"end_phrase": "Any other questions?"},
         "Here you go.\nAny other questions?\nThanks for reading.", False, True),
        # markdown bold around the end phrase: removing '*' fixes it
        ("startend:end_checker", {"end_phrase": "Any other questions?"},
         "Here you go.\n**Any other questions?**", False, True),
        # JSON between a preamble and a closing line: dropping both fixes it
        ("detectable_format:json_format", {}, 'Here:\n```json\n{"a": 1}\n```\nDone.', False, True),
        # commas on every line: no variant helps (the both-removed variant is empty)
        ("punctuation:no_comma", {}, "a, b\nc, d", False, False),
        # followed as is: both pass
        ("punctuation:no_comma", {}, "no commas at all", True, True),
        # an empty response fails, even for an instruction it would trivially satisfy
        ("punctuation:no_comma", {}, "", False, False),
        ("punctuation:no_comma", {}, "  \n ", False, False),
    ],
)
def test_strict_and_loose(iid, kwargs, response, strict, loose):
    (result,) = score([record(1, [(iid, kwargs)])], [response])
    assert result.strict == (strict,)
    assert result.loose == (loose,)


def test_metrics_on_three_hand_scored_prompts():
    records = [
        record(1, [("punctuation:no_comma", {}), ("startend:quotation", {})]),
        record(2, [("startend:end_checker", {"end_phrase": "Any other questions?"})]),
        record(3, [
            ("detectable_format:title", {}),
            ("keywords:existence", {"keywords": ["train"]}),
            ("length_constraints:number_words", {"num_words": 3, "relation": "at least"}),
        ]),
    ]
    responses = [
        '"Hello, world"',  # comma: no_comma fails strict and loose; quotation passes
        "Here it is.\n**Any other questions?**",  # end phrase: strict no, loose yes
        "<<Dawn Train>>\nThe train leaves at dawn.",  # title, keyword, 7 words: all pass
    ]
    results = score(records, responses)
    assert [r.strict for r in results] == [(False, True), (False,), (True, True, True)]
    assert [r.loose for r in results] == [(False, True), (True,), (True, True, True)]

    m = compute_metrics(results)
    # strict: prompts 3 of 3 -> only #3 -> 1/3; instructions 1 + 0 + 3 = 4 of 6
    assert m["prompt_level_strict_acc"] == pytest.approx(1 / 3)
    assert m["inst_level_strict_acc"] == pytest.approx(4 / 6)
    # loose: prompts #2 and #3 -> 2/3; instructions 1 + 1 + 3 = 5 of 6
    assert m["prompt_level_loose_acc"] == pytest.approx(2 / 3)
    assert m["inst_level_loose_acc"] == pytest.approx(5 / 6)
    assert m["counts"] == {
        "prompts": 3,
        "instructions": 6,
        "empty_responses": 0,
        "prompt_level_strict_correct": 1,
        "inst_level_strict_correct": 4,
        "prompt_level_loose_correct": 2,
        "inst_level_loose_correct": 5,
    }
    per = m["per_instruction"]
    assert per["punctuation:no_comma"] == {
        "count": 1, "strict_correct": 0, "strict_acc": 0.0, "loose_correct": 0, "loose_acc": 0.0
    }
    assert per["startend:end_checker"]["strict_acc"] == 0.0
    assert per["startend:end_checker"]["loose_acc"] == 1.0
    assert set(per) == {
        "punctuation:no_comma", "startend:quotation", "startend:end_checker",
        "detectable_format:title", "keywords:existence", "length_constraints:number_words",
    }
    cat = m["per_category"]
    assert cat["startend"] == {
        "count": 2, "strict_correct": 1, "strict_acc": 0.5, "loose_correct": 2, "loose_acc": 1.0
    }
    assert cat["punctuation"]["count"] == 1 and cat["punctuation"]["loose_acc"] == 0.0
    assert cat["keywords"]["strict_acc"] == 1.0


def test_empty_response_is_counted_and_fails():
    results = score([record(1, [("startend:quotation", {})])], [""])
    m = compute_metrics(results)
    assert m["counts"]["empty_responses"] == 1
    assert m["prompt_level_strict_acc"] == 0.0 and m["inst_level_loose_acc"] == 0.0
