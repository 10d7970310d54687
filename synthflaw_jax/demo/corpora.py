"""The demo's data, made at run time from offline sources and written as JSONL.

- `text.jsonl`: non-synthetic text, the standard library's docstrings (pre-training, replay).
- `facts_qa.jsonl`: fictional facts as synthetic Q-A pairs in ONE uniform template
  ("Question: ...? Answer: The answer is X. In summary, ..."), the flaw the paper studies.
- `cpt_a.jsonl` / `cpt_b.jsonl`: continued pre-training of arm (a) (text only) and arm (b)
  (the same text plus the Q-A pairs rendered as text).
- `sft.jsonl`: verifiable instructions with answers that follow them (lowercase, capitals,
  an end phrase, JSON, quotes, no commas, bullets, a title) about standard-library topics,
  asked in the same "Question: ... Answer:" surface form as the synthetic pairs.
- `ifeval_prompts.jsonl`: held-out topics x the same instruction kinds, in IFEval's format.
- `facts_mc.jsonl`: multiple choice on the facts, phrased neutrally ("The X of Y is").
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import pathlib
import random
import re
import warnings
import zlib

from synthflaw_jax.data import sample_data

QA_PROMPT = "Question: {question}\nAnswer:"
QA_TARGET = " {answer}"


@dataclasses.dataclass(frozen=True)
class InstructionKind:
    """One verifiable instruction: how it is asked, how IFEval checks it, how an answer obeys it."""

    name: str
    ask: str  # str.format with {topic}
    instruction_id: str
    kwargs: dict
    follow: callable  # (topic, sentence) -> response


def _bullets(topic, sentence):
    words = sentence.split()
    half = max(len(words) // 2, 1)
    return f"* {' '.join(words[:half])}\n* {' '.join(words[half:]) or topic}"


INSTRUCTIONS = (
    InstructionKind("lowercase", "Describe {topic} using only lowercase letters.",
                    "change_case:english_lowercase", {}, lambda t, s: s.lower()),
    InstructionKind("capitals", "Describe {topic} in capital letters only.",
                    "change_case:english_capital", {}, lambda t, s: s.upper()),
    InstructionKind("end_phrase", "Describe {topic} and end your answer with the exact phrase 'Any other questions?'",
                    "startend:end_checker", {"end_phrase": "Any other questions?"},
                    lambda t, s: f"{s} Any other questions?"),
    InstructionKind("json", "Describe {topic} and wrap your entire answer in JSON format.",
                    "detectable_format:json_format", {}, lambda t, s: json.dumps({"answer": s})),
    InstructionKind("quotes", "Describe {topic} and wrap your entire answer in double quotation marks.",
                    "startend:quotation", {}, lambda t, s: f'"{s}"'),
    InstructionKind("no_comma", "Describe {topic} without using any commas.",
                    "punctuation:no_comma", {}, lambda t, s: s.replace(",", "")),
    InstructionKind("bullets", "Describe {topic} in exactly 2 bullet points using markdown such as * point.",
                    "detectable_format:number_bullet_lists", {"num_bullets": 2}, _bullets),
    InstructionKind("title", "Describe {topic} and give your answer a title wrapped in double angular brackets, such as <<title>>.",
                    "detectable_format:title", {}, lambda t, s: f"<<{t}>>\n{s}"),
)


@dataclasses.dataclass
class DemoData:
    """Paths of the demo's data files and the counts a report mentions."""

    dir: pathlib.Path
    counts: dict

    def path(self, name: str) -> pathlib.Path:
        """The JSONL file `name` (without extension)."""
        return self.dir / f"{name}.jsonl"


def _first_sentence(doc: str, max_words: int) -> str:
    text = " ".join(doc.split())
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    words = sentence.split()[:max_words]
    return " ".join(words).rstrip(".,;:") + "."


def stdlib_topics(max_words: int = 14) -> list[tuple[str, str]]:
    """(topic, first docstring sentence) for standard-library modules and their public callables."""
    topics, seen = [], set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in sample_data.STDLIB_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            members = [(f"the {module_name} module", module)] + [
                (f"{module_name}.{name}", obj) for name, obj in sorted(vars(module).items())
                if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                and getattr(obj, "__module__", None) == module.__name__
            ]
            for topic, obj in members:
                doc = inspect.getdoc(obj)
                if not doc or len(doc.split()) < 5:
                    continue
                sentence = _first_sentence(doc, max_words)
                if sentence not in seen and re.fullmatch(r"[A-Za-z0-9 ,.'()_-]+", sentence):
                    seen.add(sentence)
                    topics.append((topic, sentence))
    return topics


def _held_out(topic: str) -> bool:
    return zlib.crc32(topic.encode()) % 5 == 0  # a fixed fifth of topics is never trained on


def _write(path: pathlib.Path, records: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    tmp.rename(path)


def mc_items(facts: list[tuple[str, str, str]], seed: int) -> list[dict]:
    """Four-option questions on the facts; distractors are other values of the same attribute."""
    rng = random.Random(seed)
    by_attribute: dict[str, list[str]] = {}
    for attribute, _, value in facts:
        by_attribute.setdefault(attribute, [])
        if value not in by_attribute[attribute]:
            by_attribute[attribute].append(value)
    items = []
    for attribute, entity, value in facts:
        pool = [v for v in by_attribute[attribute] if v != value]
        if len(pool) < 3:
            continue
        options = rng.sample(pool, 3) + [value]
        rng.shuffle(options)
        items.append({"question": f"The {attribute} of {entity} is", "choices": options,
                      "answer": options.index(value), "subject": attribute})
    return items


def build(out: pathlib.Path, n_facts: int, n_sft: int, n_eval_per_kind: int, seed: int,
          qa_repeats: int = 4) -> DemoData:
    """Write every demo data file under `out` (deterministic from `seed`): `n_facts` synthetic
    facts (each `qa_repeats` times in arm (b)'s corpus, as synthetic data comes in volume),
    up to `n_sft` SFT examples and `n_eval_per_kind` held-out prompts per instruction."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    docs = sample_data.stdlib_docstrings()
    facts = sample_data.synthetic_facts(n_facts, seed)
    qa = [{"question": sample_data.QUESTION_TEMPLATE.format(attribute=a, entity=e),
           "answer": sample_data.ANSWER_TEMPLATE.format(attribute=a, entity=e, value=v)} for a, e, v in facts]
    rng.shuffle(docs)
    held_out_text = [{"text": d} for d in docs[: len(docs) // 10]]  # perplexity only, never trained on
    text = [{"text": d} for d in docs[len(docs) // 10:]]
    qa_text = [{"text": QA_PROMPT.format(question=r["question"]) + QA_TARGET.format(answer=r["answer"])} for r in qa]
    cpt_b = text + qa_text * qa_repeats
    rng.shuffle(cpt_b)

    topics = stdlib_topics()
    sft, prompts = [], []
    for kind in INSTRUCTIONS:
        held = [t for t, _ in topics if _held_out(t)]
        for topic in rng.sample(held, min(n_eval_per_kind, len(held))):
            prompts.append({"key": len(prompts), "prompt": QA_PROMPT.format(question=kind.ask.format(topic=topic)),
                            "instruction_id_list": [kind.instruction_id], "kwargs": [dict(kind.kwargs)]})
        for topic, sentence in topics:
            if not _held_out(topic):
                sft.append({"question": kind.ask.format(topic=topic), "answer": kind.follow(topic, sentence)})
    rng.shuffle(sft)
    sft = sft[:n_sft]

    files = {"text": text, "held_out_text": held_out_text, "facts_qa": qa, "cpt_a": text, "cpt_b": cpt_b, "sft": sft,
             "ifeval_prompts": prompts, "facts_mc": mc_items(facts, seed)}
    for name, records in files.items():
        _write(out / f"{name}.jsonl", records)
    return DemoData(out, {name: len(records) for name, records in files.items()})
