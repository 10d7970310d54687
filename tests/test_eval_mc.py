"""Multiple choice: option log-likelihoods equal those from transformers' logits; data formats,
few-shot draws, per-subject accuracy, and errors that name the file and line."""
import json

import numpy as np
import pytest

import synthflaw_jax
from synthflaw_jax.commands import eval as eval_cmd
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.eval import multiple_choice as mc
from tests.test_generate import make_tiny_model_dir
from tests.helpers import run_eval_cli as run_cli, write_jsonl

ITEMS = [
    {"subject": "geo", "question": "Where is the Eiffel Tower?", "choices": ["Berlin", "Paris", "Rome"], "answer": 1},
    {"subject": "geo", "question": "What is the capital of Japan?", "option1": "Tokyo", "option2": "Kyoto",
     "answer": "Tokyo"},
    {"subject": "math", "question": "What is 2 + 2?", "choices": ["3", "4", "22", "5"], "answer": "B"},
    {"subject": "math", "question": "Which is prime?", "choices": ["9", "15", "7"], "answer": 2},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_tiny_model_dir(tmp_path_factory.mktemp("mc") / "hf", seed=3)
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager").eval()
    return path, hf, synthflaw_jax.load(path)


def reference_logprob(hf, tok, context: str, option: str) -> float:
    """Sum of log p(option tokens | context) from transformers' logits, in numpy."""
    import torch

    ctx = tok(context)["input_ids"]
    cont = tok(" " + option, add_special_tokens=False)["input_ids"]
    ids = ctx + cont
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0].double().numpy()
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    return float(sum(logp[len(ctx) + j - 1, t] for j, t in enumerate(cont)))


def test_zero_shot_scores_equal_transformers(tiny, tmp_path):
    path, hf, model = tiny
    data = write_jsonl(tmp_path / "quiz.jsonl", ITEMS)
    out = tmp_path / "out"
    assert run_cli(["mc", "--model", str(path), "--data", str(data), "--out", str(out), "--batch-size", "4"]) == 0
    records = [json.loads(line) for line in (out / "per_item.jsonl").read_text().splitlines()]
    tok = model.tokenizer
    correct = []
    for item, rec in zip(ITEMS, records):
        choices = rec["choices"]
        want = [reference_logprob(hf, tok, f"Question: {item['question']}\nAnswer:", c) for c in choices]
        np.testing.assert_allclose(rec["logprobs"], want, atol=2e-4)
        assert rec["pred"] == int(np.argmax(want))
        per_byte = np.array(want) / np.array([len((" " + c).encode()) for c in choices])
        assert rec["pred_norm"] == int(np.argmax(per_byte))
        correct.append(rec["pred"] == rec["answer"])
    assert [r["answer"] for r in records] == [1, 0, 1, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["acc"] == pytest.approx(np.mean(correct))
    assert metrics["per_subject"]["geo"]["n"] == 2
    assert metrics["per_subject"]["math"]["acc"] == pytest.approx(np.mean(correct[2:]))


def test_one_shot_context_and_scores_equal_transformers(tiny):
    _, hf, model = tiny
    items = [mc._item_from_object(obj, f"x line {i + 1}", "s") for i, obj in enumerate(ITEMS)]
    shots = mc.choose_shots(items, None, 1, seed=5)
    metrics, records = mc.evaluate(model, items, shots=1, seed=5, batch_size=4)
    for item, (shot,), rec in zip(items, shots, records):
        assert shot is not item
        context = (f"Question: {shot.question}\nAnswer: {shot.choices[shot.answer]}\n\n"
                   f"Question: {item.question}\nAnswer:")
        want = [reference_logprob(hf, model.tokenizer, context, c) for c in item.choices]
        np.testing.assert_allclose(rec["logprobs"], want, atol=2e-4)
    assert metrics["shots"] == 1 and metrics["seed"] == 5


def test_shots_prefer_the_subject_never_the_item_and_follow_the_seed():
    items = [mc.Item(f"q{i}", ("a", "b"), 0, "s" if i < 4 else "t", f"f line {i}") for i in range(8)]
    a = mc.choose_shots(items, None, 2, seed=1)
    assert a == mc.choose_shots(items, None, 2, seed=1)
    assert a != mc.choose_shots(items, None, 2, seed=2)
    for item, shots in zip(items, a):
        assert item not in shots and all(s.subject == item.subject for s in shots)
    dev = [mc.Item("d", ("a", "b"), 1, "s", "dev line 1"), mc.Item("e", ("a", "b"), 1, "s", "dev line 2")]
    assert all(set(s) == set(dev) for s in mc.choose_shots(items, dev, 2, seed=0))
    with pytest.raises(SynthflawError, match="only 2 examples"):
        mc.choose_shots(items, dev, 3, seed=0)


def test_letter_style_prompt():
    item = mc.Item("Pick one", ("red", "blue"), 1, "s", "f line 1")
    ctx = mc.build_context(item, [mc.Item("First?", ("x", "y"), 0, "s", "f line 2")], style="letter")
    assert ctx == "Question: First?\nA. x\nB. y\nAnswer: A\n\nQuestion: Pick one\nA. red\nB. blue\nAnswer:"
    assert mc.continuation(item, 1, "letter") == " B"


def test_mmlu_csv_layout_and_directories(tmp_path):
    d = tmp_path / "mmlu"
    d.mkdir()
    (d / "high_school_physics_test.csv").write_text('"What is, roughly, g?",1 m/s2,9.8 m/s2,98 m/s2,0,B\nQ2,a,b,c,d,d\n')
    (d / "anatomy_test.csv").write_text("Which organ pumps blood?,Liver,Heart,Lung,Skin,B\n")
    items = mc.load_items(d)
    assert [(i.subject, i.answer) for i in items] == [("anatomy", 1), ("high_school_physics", 1), ("high_school_physics", 3)]
    assert items[1].question == "What is, roughly, g?" and items[1].choices[1] == "9.8 m/s2"


def test_tofu_option_fields_as_json_lines(shared_data):
    items = mc.load_items(shared_data / "tofu" / "world_facts.json")
    assert len(items) == 117 and items[0].choices[items[0].answer] == "Paris"
    assert {i.subject for i in items} == {"world_facts"}


@pytest.mark.parametrize("name, content, message", [
    ("a.jsonl", '{"question": "q", "choices": ["a", "b"], "answer": 0}\n{"question": "q", "choices": ["a"], "answer": 0}\n',
     "a.jsonl:2: needs at least 2 options"),
    ("a.jsonl", '{"question": "q", "choices": ["a", "b"]}\n', "a.jsonl:1: missing field 'answer'"),
    ("a.jsonl", '{"question": "q", "choices": ["a", "b"], "answer": "c"}\n', "a.jsonl:1: answer 'c'"),
    ("a.jsonl", '{"question": "q", "choices": ["a", "b"], "answer": 5}\n', "a.jsonl:1: answer index 5"),
    ("a.jsonl", '{"question": "q", "option1": "a", "option2": "b", "answer": true}\n', "a.jsonl:1: field 'answer'"),
    ("a.jsonl", '{"choices": ["a", "b"], "answer": 0}\n', "a.jsonl:1: field 'question'"),
    ("a.jsonl", 'oops\n', "a.jsonl:1: bad JSON"),
    ("b_test.csv", "q,a,b,c,d,B\nq,a,b,c,d,E\n", "b_test.csv:2: last column must be an answer letter"),
    ("b_test.csv", "q,a\n", "b_test.csv:1: expected question"),
    ("c.txt", "q\n", "c.txt: unknown format"),
    ("d.jsonl", "\n", "d.jsonl: no questions"),
])
def test_malformed_data_names_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(SynthflawError, match=message.replace("(", r"\(")):
        mc.load_items(tmp_path / name)


def test_cli_errors_exit_2(tiny, tmp_path, capsys):
    path, _, _ = tiny
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": "z"}])
    assert run_cli(["mc", "--model", str(path), "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    good = write_jsonl(tmp_path / "good.jsonl", ITEMS)
    out = tmp_path / "full"
    out.mkdir()
    (out / "x").write_text("keep")
    assert run_cli(["mc", "--model", str(path), "--data", str(good), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "x").exists()
    assert run_cli(["mc", "--model", str(path), "--data", str(good), "--out", str(tmp_path / "o2"), "--shots", "9"]) == 2
    assert "--shots 9" in capsys.readouterr().err
    assert "mc" in eval_cmd.SUBCOMMANDS and "ppl" in eval_cmd.SUBCOMMANDS
