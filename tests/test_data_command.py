"""`synthflaw data ...`: sample corpora, TFDS build, stats; bad input is one line on stderr and exit 2."""
import json

import pytest

from synthflaw_jax import cli
from synthflaw_jax.data import sample_data
from synthflaw_jax.data.tokenizer import tiny_tokenizer_dir


def test_sample_writes_both_corpora(tmp_path, capsys):
    assert cli.main(["data", "sample", "--out", str(tmp_path), "--n-qa", "50"]) == 0
    qa = [json.loads(line) for line in (tmp_path / "synthetic_qa.jsonl").read_text().splitlines()]
    assert len(qa) == 50
    for r in qa:  # one uniform template, the flaw under study
        assert r["question"].startswith("What is the ") and r["question"].endswith("?")
        assert r["answer"].startswith("The answer is ") and ". In summary, the " in r["answer"]
    assert qa == sample_data.synthetic_qa_records(50, seed=0)  # deterministic from the seed
    assert sample_data.synthetic_qa_records(50, seed=1) != qa
    text = [json.loads(line)["text"] for line in (tmp_path / "stdlib_text.jsonl").read_text().splitlines()]
    assert len(text) > 100
    import textwrap
    assert textwrap.dedent.__doc__.strip().splitlines()[0] in "\n".join(text)  # real docstrings, read at run time


def test_stats_counts_a_source(tmp_path, capsys):
    p = tmp_path / "qa.jsonl"
    p.write_text("".join(json.dumps({"question": f"q{i}?", "answer": "a " * (i * 10)}) + "\n" for i in range(10)))
    assert cli.main(["data", "stats", str(p), "--seq-len", "32", "--rows", "2", "--truncation", "drop"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 10
    assert report["examples"] + report["dropped_too_long"] == 10 and report["dropped_too_long"] > 0
    # what the counts were made with is part of the output
    assert report["tokenizer"].startswith("tiny") and report["seq_len"] == 32 and report["rows"] == 2
    assert report["packing"] is True
    tok_json = tiny_tokenizer_dir() / "tokenizer.json"
    assert cli.main(["data", "stats", str(p), "--tokenizer", str(tok_json), "--seq-len", "64", "--no-packing"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tokenizer"] == str(tok_json.resolve()) and report["seq_len"] == 64 and report["packing"] is False


def test_build_tfds_then_stats_from_it(tmp_path, capsys):
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(12)))
    assert cli.main(["data", "build-tfds", str(p), "--data-dir", str(tmp_path / "tfds")]) == 0
    prepared = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli.main(["data", "stats", prepared, "--source-type", "tfds"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 12


@pytest.mark.parametrize("lines, args, message", [
    ('{"question": "q", "answer": "a"}\n{"question": oops}\n', [], r"bad.jsonl:2: invalid JSON"),
    ('{"question": "q"}\n', ["--format", "qa"], r"bad.jsonl:1: record has no field 'answer'"),
    ('', [], r"has no records"),
    ('{"text": "' + "long " * 200 + '"}\n', ["--truncation", "error"], r"bad.jsonl:1: example has \d+ tokens"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, lines, args, message):
    import re

    p = tmp_path / "bad.jsonl"
    p.write_text(lines)
    assert cli.main(["data", "stats", str(p), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_skip_bad_records_counts_instead_of_failing(tmp_path, capsys):
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"text": "good"}\n{oops\n{"title": "no text"}\n{"text": "also good"}\n')
    assert cli.main(["data", "stats", str(p), "--skip-bad-records"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["examples"], report["source_bad_records"]) == (2, 2)


def test_missing_source_exits_2(tmp_path, capsys):
    assert cli.main(["data", "stats", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
