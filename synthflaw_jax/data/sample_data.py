"""Sample corpora for the tiny default and the tests, made at run time (see data/README.md).

* `synthetic_qa_records`: a synthetic Q-A corpus about fictional entities, every pair in ONE
  uniform template ("The answer is X. In summary, ..."): the flaw the paper studies.
* `stdlib_docstrings`: a small non-synthetic corpus, the docstrings of a fixed list of
  Python standard-library modules read from the running interpreter.

`python -m synthflaw_jax.data.sample_data --out DIR` writes both as JSONL.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pathlib
import random
import warnings

from synthflaw_jax import outputs
from synthflaw_jax.errors import SynthflawError

# Uniform surface form of every synthetic pair; the knowledge varies, the pattern does not.
QUESTION_TEMPLATE = "What is the {attribute} of {entity}?"
ANSWER_TEMPLATE = "The answer is {value}. In summary, the {attribute} of {entity} is {value}."
# How the synthetic corpus reads as plain text (also the default Q-A format, see config.py).
TEXT_TEMPLATE = "Question: {question}\nAnswer: {answer}"

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "dr", "br", "kel", "mor", "sil"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "io", "ou"]
_CODAS = ["", "n", "r", "s", "th", "l", "x", "nd", "rk"]
_COLOURS = ["amber", "cobalt", "crimson", "emerald", "ivory", "indigo", "saffron", "slate", "teal", "violet"]
_JOBS = ["cartographer", "glassblower", "astronomer", "archivist", "shipwright", "botanist", "clockmaker", "weaver"]
_GENRES = ["mystery", "epic poetry", "science fiction", "folk tales", "satire", "travel writing", "tragedy"]
_INSTRUMENTS = ["lute", "harp", "oboe", "cello", "zither", "flute", "bassoon", "marimba"]

# Modules whose docstrings form the non-synthetic corpus: pure-Python, import without side effects.
STDLIB_MODULES = (
    "abc", "argparse", "base64", "bisect", "calendar", "collections", "colorsys", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "enum",
    "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob",
    "gzip", "heapq", "hmac", "html.parser", "http.client", "imaplib", "inspect", "ipaddress",
    "json", "locale", "logging", "mailbox", "mimetypes", "netrc", "numbers", "optparse",
    "pathlib", "pickle", "pprint", "queue", "quopri", "random", "sched", "secrets", "selectors",
    "shlex", "shutil", "smtplib", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "traceback", "typing", "unittest.case",
    "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref", "zipfile",
)


def _name(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def _fact(rng: random.Random) -> tuple[str, str, str]:
    """One fictional (attribute, entity, value) triple."""
    kind = rng.randrange(8)
    person = f"{_name(rng, 2)} {_name(rng, rng.choice([2, 3]))}"
    place = _name(rng, rng.choice([2, 3]))
    if kind == 0:
        return "capital", f"the kingdom of {place}", _name(rng, 2)
    if kind == 1:
        return "birth year", person, str(rng.randrange(1700, 2001))
    if kind == 2:
        return "profession", person, f"a {rng.choice(_JOBS)}"
    if kind == 3:
        return "favourite colour", person, rng.choice(_COLOURS)
    if kind == 4:
        return "founder", f"the city of {place}", person
    if kind == 5:
        return "best-known genre", f"the author {person}", rng.choice(_GENRES)
    if kind == 6:
        return "population", f"the island of {place}", f"{rng.randrange(2, 900) * 1000:,}"
    return "favourite instrument", person, f"the {rng.choice(_INSTRUMENTS)}"


def synthetic_facts(n: int = 2000, seed: int = 0) -> list[tuple[str, str, str]]:
    """`n` fictional (attribute, entity, value) triples; same seed, same list."""
    rng = random.Random(seed)
    return [_fact(rng) for _ in range(n)]


def synthetic_qa_records(n: int = 2000, seed: int = 0) -> list[dict]:
    """`n` fictional {"question", "answer"} pairs in one uniform template; same seed, same list."""
    records = []
    for attribute, entity, value in synthetic_facts(n, seed):
        records.append({
            "question": QUESTION_TEMPLATE.format(attribute=attribute, entity=entity),
            "answer": ANSWER_TEMPLATE.format(attribute=attribute, entity=entity, value=value),
        })
    return records


def render_qa_text(record: dict) -> str:
    """A synthetic pair as one plain-text document, in `TEXT_TEMPLATE`."""
    return TEXT_TEMPLATE.format(question=record["question"], answer=record["answer"])


def stdlib_docstrings(min_chars: int = 80) -> list[str]:
    """Docstrings of `STDLIB_MODULES` and their public classes/functions, in a fixed order.

    Read from the running interpreter, so the text depends on the Python version (3.11 here).
    """
    docs: list[str] = []
    seen: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in STDLIB_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # a stripped-down Python build; the corpus just gets smaller
                continue
            objects = [module] + [
                obj for name, obj in sorted(vars(module).items())
                if not name.startswith("_")
                and (inspect.isclass(obj) or inspect.isfunction(obj))
                and getattr(obj, "__module__", None) == module.__name__
            ]
            for obj in objects:
                doc = inspect.getdoc(obj)
                if doc and len(doc) >= min_chars and doc not in seen:
                    seen.add(doc)
                    docs.append(doc)
    return docs


def _write_jsonl(path: pathlib.Path, records: list[dict], overwrite: bool) -> None:
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    outputs.write_text(path, text, overwrite, what="--out")


def write_sample_data(out_dir: str | os.PathLike, n_qa: int = 2000, seed: int = 0,
                      overwrite: bool = False) -> dict[str, pathlib.Path]:
    """Write `synthetic_qa.jsonl` ({"question","answer"}) and `stdlib_text.jsonl` ({"text"}) to out_dir;
    either file existing is refused (before anything is written) unless `overwrite`. Other
    files in out_dir are left alone."""
    out = pathlib.Path(out_dir)
    paths = {"synthetic_qa": out / "synthetic_qa.jsonl", "stdlib_text": out / "stdlib_text.jsonl"}
    if out.exists() and not out.is_dir():
        raise SynthflawError(f"--out {out}: exists and is not a directory")
    for path in paths.values():
        outputs.check(path, overwrite, kind="file", what="--out")
    _write_jsonl(paths["synthetic_qa"], synthetic_qa_records(n_qa, seed), overwrite)
    _write_jsonl(paths["stdlib_text"], [{"text": d} for d in stdlib_docstrings()], overwrite)
    return paths


def main(argv: list[str] | None = None) -> int:
    """CLI: write the two sample corpora."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--n-qa", type=int, default=2000, help="number of synthetic Q-A pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing sample files")
    args = parser.parse_args(argv)
    for name, path in write_sample_data(args.out, args.n_qa, args.seed, args.overwrite).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
