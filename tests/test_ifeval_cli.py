"""`synthflaw eval ifeval`: outputs, --out handling, and every bad-input case (exit 2)."""
import json
import re

import pytest

from synthflaw_jax.eval import ifeval
from synthflaw_jax.eval.ifeval import INSTRUCTION_IDS, default_prompts_path, load_prompts
from tests.helpers import run_eval_cli as run_cli, write_jsonl


PROMPTS = [
    {"key": 1, "prompt": "Write a slogan. Wrap it in double quotes.",
     "instruction_id_list": ["startend:quotation"], "kwargs": [{}]},
    {"key": 2, "prompt": "Say hi without commas in at least 3 words.",
     "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
     "kwargs": [{"keywords": None}, {"num_words": 3, "relation": "at least"}]},
]
RESPONSES = [
    {"prompt": PROMPTS[0]["prompt"], "response": '"Less is more."'},
    {"prompt": PROMPTS[1]["prompt"], "response": "Hi, there!"},
]


@pytest.fixture
def files(tmp_path):
    return (str(write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)),
            str(write_jsonl(tmp_path / "responses.jsonl", RESPONSES)))


def test_scores_and_writes_outputs(files, tmp_path, capsys):
    prompts, responses = files
    out = tmp_path / "out"
    assert run_cli(["ifeval", "--prompts", prompts, "--responses", responses, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # prompt 1 passes; prompt 2 has a comma (fails) and 2 words "Hi", "there" (< 3, fails)
    assert metrics["prompt_level_strict_acc"] == pytest.approx(1 / 2)
    assert metrics["inst_level_strict_acc"] == pytest.approx(1 / 3)
    assert metrics["prompt_level_loose_acc"] == pytest.approx(1 / 2)
    assert metrics["inst_level_loose_acc"] == pytest.approx(1 / 3)
    assert metrics["counts"]["instructions"] == 3
    assert set(metrics["per_instruction"]) == {
        "startend:quotation", "punctuation:no_comma", "length_constraints:number_words"
    }
    rows = [json.loads(line) for line in (out / "per_prompt.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == [1, 2]
    assert rows[1]["instruction_id_list"] == PROMPTS[1]["instruction_id_list"]
    assert rows[1]["follow_instruction_list_strict"] == [False, False]
    assert rows[1]["follow_instruction_list_loose"] == [False, False]
    assert rows[0]["follow_all_instructions_strict"] is True
    assert rows[0]["follow_all_instructions_loose"] is True
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_prompt.jsonl"]  # no temp files
    assert "prompt_level_strict_acc" in capsys.readouterr().out


def test_out_must_be_empty_unless_overwrite(files, tmp_path, capsys):
    prompts, responses = files
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    argv = ["ifeval", "--prompts", prompts, "--responses", responses, "--out", str(out)]
    assert run_cli(argv) == 2
    assert "not empty" in capsys.readouterr().err
    assert not (out / "metrics.json").exists()
    assert run_cli(argv + ["--overwrite"]) == 0
    assert (out / "metrics.json").exists()


def test_empty_response_is_a_failure_not_an_error(files, tmp_path):
    prompts, _ = files
    responses = str(write_jsonl(tmp_path / "r.jsonl", [{"prompt": p["prompt"], "response": ""} for p in PROMPTS]))
    out = tmp_path / "out"
    assert run_cli(["ifeval", "--prompts", prompts, "--responses", responses, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prompt_level_loose_acc"] == 0.0
    assert metrics["counts"]["empty_responses"] == 2


def test_model_mode_scores_what_generation_returns(files, tmp_path, monkeypatch):
    prompts, _ = files
    calls = []

    def fake_generate(model_path, prompt_texts, **gen_kwargs):
        calls.append((model_path, list(prompt_texts), gen_kwargs))
        return ['"Less is more."', "Hello there friend"]

    monkeypatch.setattr(ifeval, "generate_responses", fake_generate)
    out = tmp_path / "out"
    argv = ["ifeval", "--prompts", prompts, "--model", "/m", "--out", str(out), "--max-new-tokens", "64"]
    assert run_cli(argv) == 0
    assert calls[0][0] == "/m"
    assert calls[0][1] == [p["prompt"] for p in PROMPTS]
    assert calls[0][2]["max_new_tokens"] == 64 and calls[0][2]["temperature"] == 0.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prompt_level_strict_acc"] == 1.0  # quoted; no comma and 3 words
    saved = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert saved[1] == {"prompt": PROMPTS[1]["prompt"], "response": "Hello there friend"}


def test_responses_and_model_are_exclusive(files, tmp_path):
    prompts, responses = files
    with pytest.raises(SystemExit) as exc:
        run_cli(["ifeval", "--responses", responses, "--model", "m", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2


def _bad(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _prompt_line(**over):
    row = dict(PROMPTS[0])
    row.update(over)
    return json.dumps(row)


@pytest.mark.parametrize(
    "prompt_lines,message",
    [
        ([_prompt_line(), "{not json"], r"prompts.jsonl:2: bad JSON"),
        ([json.dumps({"key": 1, "prompt": "x", "instruction_id_list": ["punctuation:no_comma"]})],
         r"prompts.jsonl:1: missing field 'kwargs'"),
        ([_prompt_line(), _prompt_line(key=2, prompt="y", instruction_id_list=["keywords:whatever"])],
         r"prompts.jsonl:2: kwargs\[0\]: unknown instruction id 'keywords:whatever'"),
        ([_prompt_line(instruction_id_list=["punctuation:no_comma"], kwargs=[{"num_words": 3}])],
         r":1: kwargs\[0\]: 'punctuation:no_comma' does not take argument\(s\) num_words"),
        ([_prompt_line(instruction_id_list=["length_constraints:number_words"],
                       kwargs=[{"num_words": 10, "relation": "about"}])],
         r":1: kwargs\[0\]: argument 'relation' must be one of"),
        ([_prompt_line(instruction_id_list=["length_constraints:number_words"],
                       kwargs=[{"num_words": 10}])],
         r":1: kwargs\[0\]: 'length_constraints:number_words' needs argument 'relation'"),
        ([_prompt_line(kwargs=[{}, {}])], r":1: 'kwargs' has 2 entries but 'instruction_id_list' has 1"),
        (["[1, 2]"], r":1: expected a JSON object"),
        ([""], r"no prompts in the file"),
    ],
)
def test_bad_prompt_files_exit_2(files, tmp_path, capsys, prompt_lines, message):
    _, responses = files
    prompts = _bad(tmp_path, "prompts.jsonl", prompt_lines)
    argv = ["ifeval", "--prompts", prompts, "--responses", responses, "--out", str(tmp_path / "o")]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line, no traceback
    assert prompts in err
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "response_lines,message",
    [
        (["oops"], r"r.jsonl:1: bad JSON"),
        ([json.dumps({"prompt": PROMPTS[0]["prompt"]})], r"r.jsonl:1: missing field 'response'"),
        ([json.dumps({"response": "hi"})], r"r.jsonl:1: missing field 'prompt'"),
        ([json.dumps({"prompt": PROMPTS[0]["prompt"], "response": 5})],
         r":1: field 'response' must be a string"),
        # only the first prompt answered: 1 of 2 missing, the first missing is key 2
        ([json.dumps(RESPONSES[0])],
         r"does not match the prompts: 1 of 2 prompts have no response .*first missing: key 2 "
         r"\(prompts line 2\)"),
        # a response to a prompt that differs by one character does not match
        ([json.dumps({"prompt": PROMPTS[0]["prompt"] + " ", "response": "x"}), json.dumps(RESPONSES[1])],
         r"1 of 2 prompts have no response .*first missing: key 1"),
    ],
)
def test_bad_response_files_exit_2(files, tmp_path, capsys, response_lines, message):
    prompts, _ = files
    responses = _bad(tmp_path, "r.jsonl", response_lines)
    argv = ["ifeval", "--prompts", prompts, "--responses", responses, "--out", str(tmp_path / "o")]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()


def test_unreadable_files_exit_2(files, tmp_path, capsys):
    prompts, responses = files
    out = str(tmp_path / "o")
    assert run_cli(["ifeval", "--prompts", str(tmp_path / "nope.jsonl"), "--responses", responses,
                    "--out", out]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    (tmp_path / "a_dir").mkdir()
    assert run_cli(["ifeval", "--prompts", str(tmp_path / "a_dir"), "--responses", responses, "--out", out]) == 2
    assert "is a directory" in capsys.readouterr().err
    # an output inside an input is refused before anything is read
    assert run_cli(["ifeval", "--prompts", str(tmp_path), "--responses", responses, "--out", out]) == 2
    assert "is inside the input" in capsys.readouterr().err
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b'{"prompt": "\xff\xfe"}\n')
    assert run_cli(["ifeval", "--prompts", prompts, "--responses", str(binary), "--out", out]) == 2
    assert "bin.jsonl: not UTF-8" in capsys.readouterr().err


def test_default_prompt_set_parses_and_covers_all_25_types(tmp_path):
    records = load_prompts(default_prompts_path())
    assert 30 <= len(records) <= 50
    used = {i for r in records for i in r.instruction_id_list}
    assert used == set(INSTRUCTION_IDS)
    assert len({r.key for r in records}) == len(records)
    assert len({r.prompt for r in records}) == len(records)
    # --prompts defaults to the shipped set: answer it with empty responses
    responses = str(write_jsonl(tmp_path / "r.jsonl", [{"prompt": r.prompt, "response": ""} for r in records]))
    assert run_cli(["ifeval", "--responses", responses, "--out", str(tmp_path / "o")]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["counts"]["prompts"] == len(records)
