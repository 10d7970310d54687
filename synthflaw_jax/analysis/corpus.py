"""Read a corpus (JSONL / JSON array / plain text) into documents, optionally sampled.

Record shapes (one JSON object a line; a `.json` file may also hold one JSON array):
- `{"text": ...}`: the document is the text; its answer view is the text too.
- `{"question": ..., "answer": ...}` (TOFU): the document is `question + "\\n" + answer`.
- `{"prompt": ..., "response": ...}`: the document is `prompt + "\\n" + response`.
- `{"messages": [{"role", "content"}, ...]}`: the document is every content joined by
  "\\n"; the answer is the last assistant message, the prompt everything before it.
A `.txt` file holds one document per block of lines separated by blank lines.
Documents that are empty after stripping whitespace are skipped and counted.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from synthflaw_jax import jsonl
from synthflaw_jax.errors import SynthflawError

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
TEXT_SUFFIXES = (".txt",)


@dataclasses.dataclass(frozen=True)
class Document:
    """One document: the full text, and the prompt/answer views when the record has them."""

    text: str
    answer: str
    prompt: str | None = None


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Documents read from `path`; `total` counts documents before sampling."""

    path: str
    documents: tuple[Document, ...]
    total: int
    skipped_empty: int = 0
    sample_size: int | None = None
    seed: int | None = None

    def texts(self) -> list[str]:
        """The full text of every document."""
        return [d.text for d in self.documents]

    def answers(self) -> list[str]:
        """The answer view of every document (the whole text where a record has no answer)."""
        return [d.answer for d in self.documents]

    def prompts(self) -> list[str]:
        """The prompt view of every document (the whole text where a record has no prompt)."""
        return [d.prompt if d.prompt is not None else d.text for d in self.documents]

    def summary(self) -> dict:
        """Counts and sampling parameters, for metrics.json."""
        return {
            "path": self.path,
            "documents": len(self.documents),
            "total_documents": self.total,
            "skipped_empty": self.skipped_empty,
            "sampled": self.sample_size is not None and self.total > len(self.documents),
            "sample_size": self.sample_size,
            "seed": self.seed,
        }


def _field(record: dict, key: str, where: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise SynthflawError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _messages_document(messages, where: str) -> Document:
    if not isinstance(messages, list) or not messages:
        raise SynthflawError(f"{where}: field 'messages' must be a non-empty list")
    contents, roles = [], []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise SynthflawError(f"{where}: messages[{i}] needs a string 'content'")
        contents.append(message["content"])
        roles.append(message.get("role"))
    text = "\n".join(contents)
    last_assistant = max((i for i, r in enumerate(roles) if r == "assistant"), default=None)
    if last_assistant is None:
        return Document(text=text, answer=text)
    prompt = "\n".join(contents[:last_assistant])
    return Document(text=text, answer=contents[last_assistant], prompt=prompt)


def record_to_document(record, where: str) -> Document:
    """Turn one parsed JSON record into a Document; `where` ("file:line") names it in errors."""
    if not isinstance(record, dict):
        raise SynthflawError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "text" in record:
        text = _field(record, "text", where)
        return Document(text=text, answer=text)
    if "question" in record and "answer" in record:
        q, a = _field(record, "question", where), _field(record, "answer", where)
        return Document(text=f"{q}\n{a}", answer=a, prompt=q)
    if "prompt" in record and "response" in record:
        p, r = _field(record, "prompt", where), _field(record, "response", where)
        return Document(text=f"{p}\n{r}", answer=r, prompt=p)
    if "messages" in record:
        return _messages_document(record["messages"], where)
    if "prompt" in record:  # probe files: prompts without responses
        p = _field(record, "prompt", where)
        return Document(text=p, answer=p, prompt=p)
    raise SynthflawError(
        f"{where}: record has none of the fields 'text', 'question'+'answer', "
        f"'prompt'+'response', 'messages' (found: {', '.join(sorted(record)) or 'none'})"
    )


def _check_file(path: pathlib.Path) -> None:
    if not path.exists():
        raise SynthflawError(f"{path}: corpus file not found")
    if path.is_dir():
        raise SynthflawError(f"{path}: is a directory, expected a corpus file")


def _read_text(path: pathlib.Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SynthflawError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise SynthflawError(f"{path}: cannot read ({err.strerror})") from None


def _json_documents(path: pathlib.Path, raw: str) -> list[Document]:
    if path.suffix == ".json" and raw.lstrip().startswith("["):
        try:
            records = json.loads(raw)
        except json.JSONDecodeError as err:
            raise SynthflawError(f"{path}:{err.lineno}: bad JSON ({err.msg})") from None
        return [record_to_document(r, f"{path}: item {i}") for i, r in enumerate(records)]
    return [record_to_document(record, f"{path}:{lineno}") for lineno, record in
            jsonl.parse_objects(path, raw.splitlines())]


def _text_documents(raw: str) -> list[Document]:
    blocks, current = [], []
    for line in raw.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return [Document(text=b, answer=b) for b in blocks]


def sample_indices(total: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a uniform sample without replacement (all indices if size is None or >= total)."""
    if size is None or size >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=size, replace=False))


def load_corpus(path, sample: int | None = None, seed: int = 0) -> Corpus:
    """Read the corpus at `path` (local or gs://); if `sample` is set and smaller, keep a seeded
    uniform sample in file order."""
    from synthflaw_jax import runtime

    path = pathlib.Path(runtime.local_input(path))
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix not in JSON_SUFFIXES + TEXT_SUFFIXES:
        raise SynthflawError(
            f"{path}: unknown corpus format {suffix or '(no suffix)'!r}; "
            f"use {', '.join(JSON_SUFFIXES + TEXT_SUFFIXES)}"
        )
    if sample is not None and sample < 1:
        raise SynthflawError(f"sample size must be at least 1, got {sample}")
    raw = _read_text(path)
    docs = _text_documents(raw) if suffix in TEXT_SUFFIXES else _json_documents(path, raw)
    kept = [d for d in docs if d.text.strip()]
    if not kept:
        raise SynthflawError(f"{path}: corpus has no non-empty documents")
    chosen = sample_indices(len(kept), sample, seed)
    return Corpus(
        path=str(path),
        documents=tuple(kept[i] for i in chosen),
        total=len(kept),
        skipped_empty=len(docs) - len(kept),
        sample_size=sample,
        seed=seed if sample is not None else None,
    )
