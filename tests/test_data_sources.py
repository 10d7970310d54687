"""Sources: JSONL file/glob/dir, errors with file:line, skip-and-count, TOFU files, TFDS round trip."""
import sys

import pytest

from synthflaw_jax.data import formats
from synthflaw_jax.data.sources import JsonlSource, ListSource, TfdsSource, open_source
from synthflaw_jax.errors import SynthflawError
from tests.helpers import write_jsonl

QA = formats.FormatSpec(format="qa")


def qa_check(record):
    return formats.validate(record, QA)


def strip(record):
    return {k: v for k, v in record.items() if not k.startswith("_")}


def test_file_glob_and_directory(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"text": "b0"}, {"text": "b1"}])
    write_jsonl(tmp_path / "a.json", [{"text": "a0"}])
    (tmp_path / "notes.txt").write_text("not data")
    one = JsonlSource(str(tmp_path / "b.jsonl"))
    assert [strip(one[i]) for i in range(len(one))] == [{"text": "b0"}, {"text": "b1"}]
    assert one[1]["_origin"] == f"{tmp_path / 'b.jsonl'}:2"
    directory = JsonlSource(str(tmp_path))
    assert [directory[i]["text"] for i in range(len(directory))] == ["a0", "b0", "b1"]  # sorted files
    globbed = JsonlSource(str(tmp_path / "*.jsonl"))
    assert [globbed[i]["text"] for i in range(len(globbed))] == ["b0", "b1"]


def test_blank_lines_and_no_trailing_newline(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "one"}\n\n   \n{"text": "two"}')
    src = JsonlSource(str(p))
    assert len(src) == 2 and src[1]["_origin"].endswith("x.jsonl:4")


def test_malformed_json_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(SynthflawError, match=r"bad\.jsonl:3: invalid JSON"):
        JsonlSource(str(p))
    p.write_text('{"text": "ok"}\n[1, 2]\n')
    with pytest.raises(SynthflawError, match=r"bad\.jsonl:2: line is a JSON list, not an object"):
        JsonlSource(str(p))


def test_missing_field_names_file_and_line(tmp_path):
    p = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}, {"question": "q only"}])
    with pytest.raises(SynthflawError, match=r"qa\.jsonl:2: record has no field 'answer' \(format qa\)"):
        JsonlSource(str(p), validate=qa_check)


def test_skip_bad_records_counts_them(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text('{"question": "q1", "answer": "a1"}\n{broken\n{"question": "q2"}\n{"question": "q3", "answer": "a3"}\n')
    src = JsonlSource(str(p), validate=qa_check, skip_bad_records=True)
    assert len(src) == 2 and src.bad_records == 2
    assert [src[i]["question"] for i in range(2)] == ["q1", "q3"]
    assert src.bad_examples[0].endswith("mixed.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)")


def test_empty_and_missing_sources(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SynthflawError, match="has no records"):
        JsonlSource(str(tmp_path / "empty.jsonl"))
    with pytest.raises(SynthflawError, match="no such file or directory"):
        JsonlSource(str(tmp_path / "missing.jsonl"))
    with pytest.raises(SynthflawError, match="glob matches no files"):
        JsonlSource(str(tmp_path / "*.parquet"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(SynthflawError, match="directory has no"):
        JsonlSource(str(tmp_path / "sub"))
    with pytest.raises(SynthflawError, match="all bad|has no records"):
        ListSource("mem", [{"question": "q"}], validate=qa_check, skip_bad_records=True)
    with pytest.raises(SynthflawError, match="source_type 'csv'"):
        open_source("x", "csv")


def test_unreadable_file_is_an_error(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes('{"text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(SynthflawError, match=r"latin1\.jsonl:1: "):
        JsonlSource(str(p))


def test_file_that_cannot_be_opened_is_an_error(tmp_path, monkeypatch):
    p = write_jsonl(tmp_path / "locked.jsonl", [{"text": "x"}])

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)  # root can read any file, so simulate the refusal
    with pytest.raises(SynthflawError, match=r"locked\.jsonl: cannot read: Permission denied"):
        JsonlSource(str(p))


def test_tofu_files_load_with_expected_counts(shared_data):
    tofu = shared_data / "tofu"
    counts = {}
    for name in ("full", "forget10", "retain90", "world_facts", "real_authors"):
        src = JsonlSource(str(tofu / f"{name}.json"), validate=qa_check)
        counts[name] = len(src)
    assert counts == {"full": 4000, "forget10": 400, "retain90": 3600, "world_facts": 117, "real_authors": 100}
    full = JsonlSource(str(tofu / "full.json"), validate=qa_check)
    forget = JsonlSource(str(tofu / "forget10.json"), validate=qa_check)
    retain = JsonlSource(str(tofu / "retain90.json"), validate=qa_check)
    pairs = {(full[i]["question"], full[i]["answer"]) for i in range(len(full))}
    forget_pairs = {(forget[i]["question"], forget[i]["answer"]) for i in range(len(forget))}
    assert forget_pairs <= pairs and len(forget_pairs) == 400
    # the README's check: full = retain90 followed by forget10, record for record
    assert [strip(full[i]) for i in range(3600, 3603)] == [strip(forget[i]) for i in range(3)]
    assert strip(full[0]) == strip(retain[0])


def test_tfds_build_and_read_back_in_order_without_tensorflow(tmp_path):
    from synthflaw_jax.data.tfds_builder import build_tfds

    src_dir = tmp_path / "in"
    src_dir.mkdir()
    records = [{"question": f"q{i}", "answer": f"a{i} \u00e9"} for i in range(300)]
    write_jsonl(src_dir / "part0.jsonl", records[:170])
    write_jsonl(src_dir / "part1.jsonl", records[170:] + [{"messages": [{"role": "user", "content": "hi"}]}])
    prepared = build_tfds(str(src_dir), tmp_path / "tfds", name="forget")
    assert (prepared / "dataset_info.json").is_file()
    assert list(prepared.glob("*.array_record*"))
    tf = TfdsSource(str(prepared))
    js = JsonlSource(str(src_dir))
    assert len(tf) == len(js) == 301
    assert [strip(tf[i]) for i in range(len(tf))] == [strip(js[i]) for i in range(len(js))]
    assert tf[170]["_origin"].endswith("part1.jsonl:1)")
    assert "tensorflow" not in sys.modules
    # the registered-name route through tfds.data_source reads the same records
    by_name = open_source("jsonl_records/forget", "tfds", data_dir=str(tmp_path / "tfds"))
    assert strip(by_name[299]) == records[299]
    with pytest.raises(SynthflawError, match="cannot open TFDS dataset"):
        TfdsSource(str(tmp_path / "nothing_here"))
