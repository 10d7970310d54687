"""Reading corpora: record shapes, plain text, sampling and errors."""
import json

import pytest

from synthflaw_jax.analysis.corpus import load_corpus, sample_indices
from synthflaw_jax.errors import SynthflawError
from tests.helpers import write_jsonl


def test_record_shapes(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"question": "Who?", "answer": "Her."},
        {"prompt": "Say hi", "response": "Hi"},
        {"text": "plain text"},
        {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Q1"},
                      {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
                      {"role": "assistant", "content": "A2"}]},
    ])
    docs = load_corpus(path).documents
    assert (docs[0].text, docs[0].answer, docs[0].prompt) == ("Who?\nHer.", "Her.", "Who?")
    assert (docs[1].text, docs[1].answer, docs[1].prompt) == ("Say hi\nHi", "Hi", "Say hi")
    assert (docs[2].text, docs[2].answer, docs[2].prompt) == ("plain text", "plain text", None)
    assert docs[3].text == "Be kind.\nQ1\nA1\nQ2\nA2"
    assert docs[3].answer == "A2"
    assert docs[3].prompt == "Be kind.\nQ1\nA1\nQ2"


def test_views_and_summary(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "Q", "answer": "A"}, {"text": "T"}])
    corpus = load_corpus(path)
    assert corpus.texts() == ["Q\nA", "T"]
    assert corpus.answers() == ["A", "T"]
    assert corpus.prompts() == ["Q", "T"]
    assert corpus.summary()["documents"] == 2 and corpus.summary()["sampled"] is False


def test_plain_text_blocks(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("first line\nsecond line\n\n   \n\nthird\n\n\nfourth\n", encoding="utf-8")
    assert load_corpus(path).texts() == ["first line\nsecond line", "third", "fourth"]


def test_json_array_and_blank_lines_and_empty_documents(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"text": "one"}, {"text": "two"}]), encoding="utf-8")
    assert load_corpus(arr).texts() == ["one", "two"]
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "x"}\n\n{"text": "   "}\n{"text": "y"}\n', encoding="utf-8")
    corpus = load_corpus(path)
    assert corpus.texts() == ["x", "y"]
    assert corpus.skipped_empty == 1


def test_sampling_is_seeded_uniform_and_keeps_file_order(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": f"doc {i}"} for i in range(50)])
    a = load_corpus(path, sample=10, seed=1)
    b = load_corpus(path, sample=10, seed=1)
    c = load_corpus(path, sample=10, seed=2)
    assert a.texts() == b.texts()
    assert a.texts() != c.texts()
    numbers = [int(t.split()[1]) for t in a.texts()]
    assert len(set(numbers)) == 10 and numbers == sorted(numbers)
    assert a.total == 50 and a.summary()["sampled"] is True
    assert len(load_corpus(path, sample=500).documents) == 50
    assert list(sample_indices(5, None, 0)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("content, message", [
    ("", "no non-empty documents"),
    ('{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n', ":3: bad JSON"),
    ('{"text": 5}\n', "field 'text' must be a string"),
    ('{"title": "x"}\n', "none of the fields"),
    ('[1, 2]\n', "expected a JSON object"),
    ('{"messages": []}\n', "non-empty list"),
])
def test_bad_input_raises_one_line_error_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SynthflawError, match=message) as err:
        load_corpus(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(SynthflawError, match="not found"):
        load_corpus(tmp_path / "missing.jsonl")
    with pytest.raises(SynthflawError, match="is a directory"):
        load_corpus(tmp_path)
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(SynthflawError, match="not UTF-8"):
        load_corpus(tmp_path / "latin.txt")
    (tmp_path / "c.csv").write_text("a,b\n")
    with pytest.raises(SynthflawError, match="unknown corpus format"):
        load_corpus(tmp_path / "c.csv")
    (tmp_path / "ok.txt").write_text("x\n")
    with pytest.raises(SynthflawError, match="at least 1"):
        load_corpus(tmp_path / "ok.txt", sample=0)


def test_tofu_full_reads_as_question_answer(shared_data):
    corpus = load_corpus(shared_data / "tofu" / "full.json")
    assert corpus.total == 4000
    first = json.loads((shared_data / "tofu" / "full.json").read_text(encoding="utf-8").splitlines()[0])
    assert corpus.documents[0].text == first["question"] + "\n" + first["answer"]
    assert corpus.documents[0].answer == first["answer"]
