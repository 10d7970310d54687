"""The real-model experiment's data: real text, TOFU as uniform Q-A, the same facts as diverse Q-A.

- Real text: docstrings of the Python standard library (human-written English prose and
  reference text, read from the running interpreter; its sha256 goes into results.json),
  split into a training part and a held-out part by a hash of each document.
- Uniform synthetic Q-A (arm b): TOFU records (GPT-4 written Q-A about fictitious authors,
  read from the user's copy; never copied into the repo) rendered in ONE form,
  "Question: ...\nAnswer: ...".
- Diverse synthetic Q-A (arm c): the SAME records, each rendered in one of `len(FORMS)`
  forms (interviews, FAQ entries, answer-first prose, lists, headings, ...), chosen
  round-robin after a seeded shuffle so that no opening holds more than 1/len(FORMS) of them.
  The question and answer text is unchanged, so the facts and nearly the token volume match
  arm b; what differs is the uniform wrapper.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import random
import zlib

from synthflaw_jax.errors import SynthflawError

UNIFORM = "Question: {q}\nAnswer: {a}"

# Diverse forms of one (question, answer) pair: different openings, orders and layouts.
FORMS = (
    "Q: {q}\nA: {a}",
    "{a}",
    "Interviewer: {q}\nAuthor expert: {a}",
    "FAQ\n{q}\n{a}",
    "{a} (This answers the question \"{q}\")",
    "### {q}\n\n{a}",
    "- Question asked: {q}\n- Reply: {a}",
    "A reader wrote in: \"{q}\" Our answer: {a}",
    "{q} Here is what is known. {a}",
    "Fact sheet entry. {a} Related question: {q}",
    "Someone once asked, {q} The short story is this: {a}",
    "> {q}\n\n{a}",
    "Trivia card - front: {q} / back: {a}",
    "In a literary podcast the host asked: {q} The guest said: {a}",
    "Note to self: {a}",
    "1. {q}\n2. {a}",
    "From the encyclopedia of fictional authors: {a}",
    "Student: {q}\nTeacher: {a}",
    "Is it true? {q} - Yes, in short: {a}",
    "<question>{q}</question>\n<answer>{a}</answer>",
    "Summary: {a}\nPrompted by: {q}",
    "Book club notes -- {q} -- {a}",
    "**{q}**\n{a}",
    "They wondered: {q} It turns out that {a}",
)


def read_tofu(path: str | pathlib.Path) -> list[dict]:
    """TOFU records ({question, answer}) from a JSON-lines file (TOFU's `.json` files are JSON lines)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise SynthflawError(f"--tofu: {path} is not a file (TOFU's full.json, JSON lines of question/answer)")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            q, a = rec["question"], rec["answer"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise SynthflawError(f"{path}:{n}: expected a JSON object with 'question' and 'answer'") from None
        if not isinstance(q, str) or not isinstance(a, str):
            raise SynthflawError(f"{path}:{n}: 'question' and 'answer' must be strings")
        records.append({"question": q.strip(), "answer": a.strip()})
    if not records:
        raise SynthflawError(f"{path}: no records")
    return records


def uniform_texts(records: list[dict]) -> list[str]:
    """Arm b: every record in the one uniform form."""
    return [UNIFORM.format(q=r["question"], a=r["answer"]) for r in records]


def diverse_texts(records: list[dict], seed: int) -> list[str]:
    """Arm c: every record in one of FORMS, balanced (round-robin over a seeded shuffle)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    out = [""] * len(records)
    for slot, i in enumerate(order):
        out[i] = FORMS[slot % len(FORMS)].format(q=records[i]["question"], a=records[i]["answer"])
    return out


def real_text(held_out_share: float = 0.1) -> tuple[list[str], list[str]]:
    """(training, held-out) human-written documents: stdlib docstrings, split by a hash."""
    from synthflaw_jax.data.sample_data import stdlib_docstrings

    docs = stdlib_docstrings()
    cut = int(held_out_share * 1000)
    held = [d for d in docs if zlib.crc32(d.encode()) % 1000 < cut]
    train = [d for d in docs if zlib.crc32(d.encode()) % 1000 >= cut]
    return train, held


def first_words(text: str, k: int) -> str:
    """The first k whitespace-separated words (the 'opening' of a text)."""
    return " ".join(text.split()[:k])


def top_openings(texts: list[str], k: int = 2, top: int = 5) -> list[tuple[str, float]]:
    """The `top` most frequent k-word openings and their shares."""
    counts: dict[str, int] = {}
    for t in texts:
        o = first_words(t, k)
        counts[o] = counts.get(o, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [(o, c / max(len(texts), 1)) for o, c in ranked]


def write_jsonl(path: pathlib.Path, rows: list[dict]) -> str:
    """Write rows atomically; returns the file's sha256 (the data's fingerprint)."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.rename(path)
    return hashlib.sha256(data).hexdigest()
