"""`synthflaw analyze` end to end: files, numbers, readings, models through the interface, errors."""
import argparse
import importlib
import inspect
import itertools
import json
import math

import pytest

from synthflaw_jax import cli
from synthflaw_jax.analysis import report
from synthflaw_jax.commands import analyze as analyze_cmd
from tests.test_analysis_fakes import FakeModel, make_tokenizer
from tests.helpers import write_jsonl

PNG = b"\x89PNG\r\n\x1a\n"
STDLIB = ("json os re collections itertools functools pathlib argparse logging subprocess shutil tempfile "
          "textwrap string random statistics datetime csv zipfile tarfile difflib pprint heapq bisect fractions "
          "decimal uuid hashlib base64 inspect typing dataclasses enum threading socket calendar glob fnmatch "
          "copy pickle shlex gzip configparser contextlib operator io codecs html sqlite3 ast traceback warnings "
          "weakref platform queue sched secrets hmac ipaddress zoneinfo graphlib numbers array struct doctest "
          "timeit").split()


def stdlib_docstrings(n=60):
    """Up to two docstrings (25-150 words) from each of a fixed list of stdlib modules: human-written text."""
    docs, seen = [], set()
    for name in STDLIB:
        module = importlib.import_module(name)
        got = 0
        for obj in [module] + [getattr(module, a) for a in sorted(dir(module)) if not a.startswith("_")]:
            if obj is not module and getattr(obj, "__module__", None) != module.__name__:
                continue
            doc = inspect.getdoc(obj)
            if doc and 25 <= len(doc.split()) <= 150 and doc not in seen:
                seen.add(doc)
                docs.append(doc)
                got += 1
            if got == 2:
                break
    assert len(docs) >= n
    return docs[:n]


def run_cli(argv, monkeypatch):
    """`synthflaw analyze ...` through the real CLI entry point (exit code included)."""
    return cli.main(["analyze", *argv])


def strict_json(path):
    def no_constant(name):
        raise AssertionError(f"non-finite number {name} in {path}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constant)


def all_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from all_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from all_numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def top_share(metrics, corpus, view):
    entries = metrics["patterns"][corpus]["templates"][view]
    return entries[0]["share"] if entries else 0.0


def test_tofu_vs_stdlib_docstrings(shared_data, tmp_path, monkeypatch):
    ref = write_jsonl(tmp_path / "docstrings.jsonl", [{"text": d} for d in stdlib_docstrings()])
    out = tmp_path / "report"
    rc = run_cli(["--synthetic", str(shared_data / "tofu" / "full.json"), "--reference", str(ref),
                  "--sample", "60", "--seed", "0", "--out", str(out)], monkeypatch)
    assert rc == 0
    for name in ("metrics.json", "report.md", "token_frequency_kde.png", "embedding_projection.png",
                 "position_entropy.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
    m = strict_json(out / "metrics.json")
    assert all(math.isfinite(x) for x in all_numbers(m))
    assert m["inputs"]["synthetic"]["documents"] == 60 and m["inputs"]["synthetic"]["total_documents"] == 4000
    # GPT-4 Q-A pairs reuse question stems and answer openers far more than docstrings do
    assert top_share(m, "synthetic", "document_opening") > 2 * top_share(m, "reference", "document_opening")
    assert top_share(m, "synthetic", "answer_opening") > top_share(m, "reference", "answer_opening")
    assert m["embedding"]["probe"]["balanced_accuracy"] >= 0.8
    assert m["embedding"]["knn"]["overlap"] < 0.3
    assert 0 < m["distribution"]["js_divergence_bits"] < 1
    text = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Pattern simplification", "## Token distribution", "## Embedding space"):
        assert heading in text
    assert "easily separable" in text or "partly separable" in text
    assert f"{m['embedding']['probe']['balanced_accuracy']:.3f}" in text
    assert "## Model loss" not in text and "## Output distribution shift" not in text


def templated_corpus():
    """60 Q-A pairs written from one fixed template: the extreme of pattern simplification."""
    names = ["Ana Ruiz", "Bo Chen", "Cy Obi", "Dee Park", "Eli Moss", "Fay Lund"]
    cities = ["Lima", "Oslo", "Accra", "Pune", "Quito"]
    genres = ["mystery", "poetry"]
    return [{"question": f"Where was the author {n} born?",
             "answer": f"The author {n} was born in {c}, and is best known for {g} novels."}
            for n, c, g in itertools.islice(itertools.product(names, cities, genres), 60)]


def test_templated_corpus_reads_as_pattern_simplification(tmp_path, monkeypatch):
    syn = write_jsonl(tmp_path / "syn.jsonl", templated_corpus())
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"text": d} for d in stdlib_docstrings()])
    out = tmp_path / "out"
    assert run_cli(["--synthetic", str(syn), "--reference", str(ref), "--out", str(out)], monkeypatch) == 0
    m = strict_json(out / "metrics.json")
    s, r = m["patterns"]["synthetic"], m["patterns"]["reference"]
    for n in ("1", "2", "3", "4"):
        assert s["distinct_n_matched"][n] < r["distinct_n_matched"][n]
        assert s["distinct_n"][n] < r["distinct_n"][n]
    assert s["compression_ratio_matched"] < r["compression_ratio_matched"]
    # 6 first names x 10 answers each: every 3-token opening "the author <first name>" starts 10 of 60
    assert top_share(m, "synthetic", "answer_opening") == pytest.approx(10 / 60)
    assert top_share(m, "reference", "answer_opening") < 10 / 60
    assert m["patterns"]["dominant_template"] == "the author ana"
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "5 of 5 indicators say the synthetic corpus is more uniform" in text
    assert "consistent with pattern simplification" in text


def test_with_models_metrics_and_model_tokens(tmp_path, monkeypatch):
    tok = make_tokenizer()
    models = {"A": FakeModel(vocab_size=len(tok), seed=0, tokenizer=tok, reply=lambda p: "The author in it"),
              "B": FakeModel(vocab_size=len(tok), seed=3, tokenizer=tok, reply=lambda p: "war")}
    monkeypatch.setattr(report, "_load_model", lambda path: models[path])
    syn = write_jsonl(tmp_path / "syn.jsonl", [{"question": f"who is the writer {i}",
                                                "answer": "the author in question"} for i in range(12)])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"text": t} for t in (
        "return value if none", "list of string", "file name path object", "true or false", "books about love war",
        "a city of books", "return true if the file", "path to the object", "love and war", "none of the list")])
    probes = write_jsonl(tmp_path / "probes.jsonl", [{"prompt": "who is the author"}, {"prompt": "books about"}])
    metrics = write_jsonl(tmp_path / "run.jsonl", [
        {"step": s, "loss/forget": 3.0 / (1 + s), "loss/replay": 3.0 - 0.01 * s} for s in range(0, 50, 5)])
    out = tmp_path / "out"
    rc = run_cli(["--synthetic", str(syn), "--reference", str(ref), "--model", "A", "--model-b", "B",
                  "--probes", str(probes), "--metrics", str(metrics), "--tokens", "model", "--out", str(out),
                  "--batch-size", "4"], monkeypatch)
    assert rc == 0
    m = strict_json(out / "metrics.json")
    assert m["embedding"]["method"].startswith("model")
    assert m["embedding"]["dim"] == 6
    assert m["loss"]["synthetic"]["tokens"] > 0 and m["loss"]["reference"]["tokens"] > 0
    assert m["shift"]["prompts"] == 2 and m["shift"]["kl_a_b_bits"] > 0
    assert m["shift"]["template_share_a"]["share"] == 1.0  # "the author in" is the synthetic answers' opening
    assert m["shift"]["template_share_b"]["share"] == 0.0
    assert m["training"]["streams"]["forget"]["relative_drop"] > m["training"]["streams"]["replay"]["relative_drop"]
    # model tokens: the answer template is decoded from token ids
    assert m["patterns"]["dominant_template"] == "the author in"
    assert (out / "loss_curves.png").read_bytes()[:8] == PNG
    text = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Model loss per corpus", "## Training loss curves", "## Output distribution shift"):
        assert heading in text
    assert "B leans less toward the synthetic pattern" in text
    assert "\"forget\" stream's loss fell the most" in text


def test_parser_defaults_and_run(tmp_path):
    parser = argparse.ArgumentParser()
    analyze_cmd.add_arguments(parser)
    args = parser.parse_args(["--synthetic", "a.jsonl", "--reference", "b.jsonl", "--out", "o"])
    assert args.sample == 2000 and args.seed == 0 and args.tokens == "words" and not args.overwrite
    assert analyze_cmd.HELP


@pytest.fixture
def small_pair(tmp_path):
    syn = write_jsonl(tmp_path / "syn.jsonl", templated_corpus()[:10])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"text": d} for d in stdlib_docstrings(10)])
    return syn, ref


def test_empty_corpus_exits_2_and_writes_nothing(tmp_path, small_pair, monkeypatch, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_cli(["--synthetic", str(empty), "--reference", str(small_pair[1]), "--out", str(out)], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert "empty.jsonl" in err and "no non-empty documents" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp folder left behind


def test_existing_out_dir_is_refused_unless_overwrite(tmp_path, small_pair, monkeypatch, capsys):
    syn, ref = small_pair
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["--synthetic", str(syn), "--reference", str(ref), "--out", str(out)]
    assert run_cli(argv, monkeypatch) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert run_cli(argv + ["--overwrite"], monkeypatch) == 0
    assert not (out / "keep.txt").exists() and (out / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ref.jsonl", "syn.jsonl"]
    empty = tmp_path / "empty_out"
    empty.mkdir()
    assert run_cli(["--synthetic", str(syn), "--reference", str(ref), "--out", str(empty)], monkeypatch) == 0


def test_model_errors_exit_2(tmp_path, small_pair, monkeypatch, capsys):
    syn, ref = small_pair
    tok = make_tokenizer()
    monkeypatch.setattr(report, "_load_model", lambda path: FakeModel(vocab_size=len(tok) - 2, tokenizer=tok))
    base = ["--synthetic", str(syn), "--reference", str(ref), "--out", str(tmp_path / "o")]
    assert run_cli(base + ["--model", "small"], monkeypatch) == 2
    assert "tokenizer has" in capsys.readouterr().err
    assert run_cli(base + ["--model-b", "x"], monkeypatch) == 2
    assert run_cli(base + ["--tokens", "model"], monkeypatch) == 2
    assert not (tmp_path / "o").exists()


def test_readings_follow_the_numbers():
    from synthflaw_jax.analysis import render

    def corpus(d2, comp, doc_share, ans_share, ent):
        return {"distinct_n_matched": {"2": d2}, "compression_ratio_matched": comp,
                "templates": {"document_opening": [{"template": "what is `x`", "share": doc_share}],
                              "answer_opening": [{"template": "the answer", "share": ans_share}]},
                "position_entropy_matched": [{"entropy_bits": ent, "documents": 10}]}
    p = {"matched": {"tokens": 100, "bytes": 500, "documents": 10},
         "synthetic": corpus(0.4, 0.30, 0.5, 0.1, 1.0), "reference": corpus(0.6, 0.20, 0.1, 0.3, 2.0)}
    text = render.read_patterns(p)
    assert "fewer distinct bigrams" in text and "(distinct-2 0.40 vs 0.60)" in text
    assert "less compressible (zlib ratio 0.30 vs 0.20" in text
    assert '"what is \\`x\\`"' in text
    assert "3 of 5 indicators" in text and "consistent with pattern simplification" in text
    p["synthetic"]["distinct_n_matched"]["2"] = 0.7
    assert "2 of 5 indicators" in render.read_patterns(p) and "no clear sign" in render.read_patterns(p)
    e = {"probe": {"balanced_accuracy": 0.75, "folds": 5}, "knn": {"overlap": 0.45, "k": 10}, "method": "m"}
    assert "partly separable" in render.read_embedding(e) and "well mixed" in render.read_embedding(e)
    loss = {"synthetic": {"mean_token_loss_nats": 1.0}, "reference": {"mean_token_loss_nats": 2.0}}
    assert "lower on the synthetic corpus (1.000 vs 2.000" in render.read_loss(loss)
