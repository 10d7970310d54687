"""`eval suite` writes results.json, report.md and chart.png side by side; `eval ifeval --model`
generates then scores; bad configs and outputs exit 2."""
import json
import shutil

import pytest

import synthflaw_jax
from synthflaw_jax.eval import multiple_choice as mc
from synthflaw_jax.eval import suite
from tests.test_generate import make_tiny_model_dir
from tests.helpers import run_eval_cli as run_cli, write_jsonl

PROMPTS = [
    {"key": 1, "prompt": "Write a slogan. Wrap it in double quotes.",
     "instruction_id_list": ["startend:quotation"], "kwargs": [{}]},
    {"key": 2, "prompt": "Say hi without commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
]
MC_ITEMS = [
    {"question": "What is 1 + 1?", "choices": ["2", "3"], "answer": 0},
    {"question": "Which is a colour?", "choices": ["dog", "red", "run"], "answer": "red"},
    {"question": "Which is a fruit?", "choices": ["apple", "chair"], "answer": "A"},
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    return make_tiny_model_dir(root / "base", seed=0), make_tiny_model_dir(root / "unlearned", seed=1)


def test_suite_on_two_models_from_a_config(models, tmp_path, capsys):
    base, other = models
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    write_jsonl(cfg_dir / "prompts.jsonl", PROMPTS)
    write_jsonl(cfg_dir / "quiz.jsonl", MC_ITEMS)
    (cfg_dir / "t.txt").write_text("The library opens at nine and closes at six in the evening.")
    config = {"batch_size": 4, "tasks": [
        {"type": "ifeval", "prompts": "prompts.jsonl", "max_new_tokens": 4},
        {"type": "mc", "name": "quiz", "data": "quiz.jsonl", "shots": 1},
        {"type": "ppl", "name": "library", "data": "t.txt", "max_length": 16},
    ]}
    (cfg_dir / "suite.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    argv = ["suite", "--model", str(base), "--model", str(other), "--config", str(cfg_dir / "suite.json"), "--out", str(out)]
    assert run_cli(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["base", "unlearned"]
    rows = {(r["task"], r["metric"]): r["values"] for r in results["table"]}
    assert set(rows) == {("ifeval", "prompt_level_strict_acc"), ("ifeval", "inst_level_strict_acc"),
                         ("ifeval", "prompt_level_loose_acc"), ("ifeval", "inst_level_loose_acc"),
                         ("quiz", "acc"), ("quiz", "acc_norm"), ("library", "ppl")}
    # the suite's numbers are the standalone evaluation's numbers
    items = mc.load_items(cfg_dir / "quiz.jsonl")
    alone, _ = mc.evaluate(synthflaw_jax.load(other), items, shots=1, seed=0, batch_size=4)
    assert rows[("quiz", "acc")]["unlearned"] == alone["acc"]
    ppl = json.loads((out / "base" / "library" / "metrics.json").read_text())
    assert rows[("library", "ppl")]["base"] == ppl["ppl"] and ppl["max_length"] == 16
    assert len((out / "unlearned" / "ifeval" / "responses.jsonl").read_text().splitlines()) == 2
    report = (out / "report.md").read_text()
    assert "| task | metric | base | unlearned |" in report and "| quiz | acc ↑ |" in report
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert run_cli(argv) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert run_cli([*argv, "--overwrite"]) == 0


def test_suite_default_tasks_need_no_files(models, tmp_path):
    base, _ = models
    out = tmp_path / "d"
    assert run_cli(["suite", "--model", str(base), "--tasks", "mc,ppl", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [t["name"] for t in results["tasks"]] == ["mc", "ppl"]
    assert results["metrics"]["base"]["mc"]["n"] == 12
    assert set(results["metrics"]["base"]["mc"]["per_subject"]) == {"arithmetic", "science", "language"}
    assert suite.parse_tasks(["ifeval", "mc", "ppl"], "--tasks")[0].options == {}
    assert suite.resource("ifeval", "default_prompts.jsonl").is_file()


@pytest.mark.parametrize("config, message", [
    ('{"tasks": [{"type": "mc", "shot": 1}]}', "tasks[0]: unknown key 'shot'"),
    ('{"tasks": [{"type": "bleu"}]}', "tasks[0]: 'type' must be one of"),
    ('{"tasks": [{"type": "mc"}, {"type": "mc"}]}', "tasks[1]: two tasks are named 'mc'"),
    ('{"tasks": [{"type": "ppl", "max_length": "long"}]}', "tasks[0]: 'max_length' has the wrong type"),
    ('{"tasks": []}', "no tasks"),
    ('{"tasks": [\n{"type": "mc"},,\n]}', ":2: bad JSON"),
    ('{"task": []}', "expected an object with a 'tasks' list"),
])
def test_bad_config_exits_2(models, tmp_path, capsys, config, message):
    (tmp_path / "c.json").write_text(config)
    argv = ["suite", "--model", str(models[0]), "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "o")]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert "c.json" in err and message in err
    assert not (tmp_path / "o").exists()


def test_suite_refuses_missing_models_and_bad_tasks(models, tmp_path, capsys):
    assert run_cli(["suite", "--model", str(tmp_path / "nope"), "--tasks", "ppl", "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert run_cli(["suite", "--model", str(models[0]), "--tasks", "ppl,x", "--out", str(tmp_path / "o")]) == 2
    assert "--tasks: tasks[1]" in capsys.readouterr().err


def test_model_names_readable_and_nameable(tmp_path, capsys):
    """`--model runs/sft_a/hf` is `sft_a`; parents come in only on clashes; NAME=PATH names."""
    assert suite.parse_models(["/r/stages/sft_a/hf", "/r/stages/sft_b/hf"]) == [
        ("sft_a", "/r/stages/sft_a/hf"), ("sft_b", "/r/stages/sft_b/hf")]
    assert [n for n, _ in suite.parse_models(["/x/sft_a/hf", "/y/sft_a/hf", "/y/base"])] == [
        "x-sft_a", "y-sft_a", "base"]
    assert suite.parse_models(["before=/r/a/hf", "after=/r/b/hf"]) == [("before", "/r/a/hf"), ("after", "/r/b/hf")]
    assert [n for n, _ in suite.parse_models(["sft_a=/r/b/hf", "/r/stages/sft_a/hf"])] == ["sft_a", "stages-sft_a"]
    odd = tmp_path / "a=b"  # an existing path with '=' in it is a path, not NAME=PATH
    odd.mkdir()
    assert suite.parse_models([str(odd)]) == [("a=b", str(odd))]
    with pytest.raises(suite.SynthflawError, match="two models are named 'm'"):
        suite.parse_models(["m=/r/a", "m=/r/b"])
    with pytest.raises(suite.SynthflawError, match="the same model is given twice"):
        suite.parse_models(["/r/a/hf", "/r/a/hf/"])


def test_suite_names_models_and_shows_progress(models, tmp_path, capsys):
    base, other = models
    stage = tmp_path / "stages" / "sft_a"
    stage.mkdir(parents=True)
    (stage / "hf").symlink_to(other)
    out = tmp_path / "o"
    capsys.readouterr()
    argv = ["suite", "--model", f"before={base}", "--model", str(stage / "hf"), "--tasks", "ppl", "--out", str(out)]
    assert run_cli(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["models"] == [{"name": "before", "path": str(base)}, {"name": "sft_a", "path": str(stage / "hf")}]
    assert (out / "sft_a" / "ppl" / "metrics.json").is_file()
    assert "| task | metric | before | sft_a |" in (out / "report.md").read_text()
    err = capsys.readouterr().err
    windows = json.loads((out / "before" / "ppl" / "metrics.json").read_text())["windows"]
    assert f"[1/2] before: ppl: 100%" in err and f"{windows}/{windows}" in err and "[2/2] sft_a: ppl" in err
    assert run_cli([*argv, "--overwrite", "--no-progress"]) == 0
    assert "[1/2]" not in capsys.readouterr().err


def test_ifeval_with_a_model_generates_then_scores(models, tmp_path, capsys):
    base, _ = models
    prompts = write_jsonl(tmp_path / "p.jsonl", PROMPTS)
    out = tmp_path / "o"
    argv = ["ifeval", "--model", str(base), "--prompts", str(prompts), "--out", str(out), "--max-new-tokens", "4",
            "--batch-size", "4"]
    assert run_cli(argv) == 0
    responses = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    want = synthflaw_jax.load(base).generate([p["prompt"] for p in PROMPTS], 4, batch_size=4)
    assert [r["response"] for r in responses] == want
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["prompts"] == 2 and 0.0 <= metrics["prompt_level_loose_acc"] <= 1.0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(["ifeval", "--model", str(empty), "--prompts", str(prompts), "--out", str(tmp_path / "o2")]) == 2
    assert "neither an HF model directory" in capsys.readouterr().err


def test_model_without_tokenizer_is_refused(models, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(models[0], bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / name).unlink(missing_ok=True)
    data = tmp_path / "t.txt"
    data.write_text("some text to score")
    assert run_cli(["ppl", "--model", str(bare), "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "no tokenizer" in capsys.readouterr().err
