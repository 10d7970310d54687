"""The demo's data, built from files shipped with the package and written as JSONL.

Everything is deterministic from the seed and the same on every machine: the
non-synthetic text is a snapshot of the Python standard library's docstrings shipped in
`resources/demo/` (not read from the running interpreter), and the facts come from a
seeded generator.

- `text.jsonl`: non-synthetic text (pre-training, replay); `held_out_text.jsonl`: never
  trained on, for perplexity.
- `facts_qa.jsonl`: fictional facts as synthetic Q-A pairs in ONE uniform template
  ("Question: ...? Answer: The answer is X. In summary, ..."), the flaw the paper studies;
  the forget set of unlearning.
- `cpt_a.jsonl`, `cpt_b.jsonl`, `cpt_c.jsonl`: continued pre-training of the three arms:
  (a) the text only; (b) the text plus the facts in the uniform template; (c) the text plus
  the same facts, as many times, in about the same number of tokens, in diverse forms.
- `sft.jsonl`: verifiable instructions with answers that follow them, about
  standard-library topics, in the same "Question: ... Answer:" surface form.
- `ifeval_prompts.jsonl`: held-out topics x the instruction kinds, in IFEval's format (the
  evaluation); `dev_prompts.jsonl`: other topics, the same kinds (for choices, never the
  evaluation prompts).
- `facts_mc.jsonl`: multiple choice on the facts, phrased neutrally ("The X of Y is").
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import gzip
import hashlib
import importlib.resources
import json
import pathlib
import random
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


def _highlight(topic, sentence):
    words = sentence.split()
    return " ".join([f"*{words[0]}*"] + words[1:])


# No kind whose checker runs language detection (IFEval's case-change checks do): on
# degenerate strings ("RETTTTTT.") the detector's verdict is arbitrary and it once decided
# the whole gap between the arms. Several kinds constrain where an answer starts or ends,
# which is where the synthetic template sits. Titles and postscripts are fixed phrases: the
# tiny model cannot copy a topic name into them (on the development prompts arm (a) wrote
# "<<inspect.S.S." for every title when the title was the topic).
INSTRUCTIONS = (
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
                    "detectable_format:title", {}, lambda t, s: f"<<Overview>>\n{s}"),
    InstructionKind("postscript", "Describe {topic} and add a postscript starting with P.S. at the end.",
                    "detectable_content:postscript", {"postscript_marker": "P.S."},
                    lambda t, s: f"{s}\nP.S. I hope this helps."),
    InstructionKind("highlight", "Describe {topic} and highlight the first word with markdown, i.e. *word*.",
                    "detectable_format:number_highlighted_sections", {"num_highlights": 1}, _highlight),
)
KIND_OF_INSTRUCTION = {kind.instruction_id: kind.name for kind in INSTRUCTIONS}


@dataclasses.dataclass
class DemoData:
    """Paths of the demo's data files, the counts a report mentions and their fingerprint."""

    dir: pathlib.Path
    counts: dict
    fingerprint: str = ""

    def path(self, name: str) -> pathlib.Path:
        """The JSONL file `name` (without extension)."""
        return self.dir / f"{name}.jsonl"


@functools.lru_cache(maxsize=1)
def stdlib_snapshot() -> dict:
    """The shipped snapshot: {"source", "docs": [docstring], "topics": [[topic, first sentence]]}."""
    blob = importlib.resources.files("synthflaw_jax").joinpath("resources/demo/stdlib_corpus.json.gz").read_bytes()
    return json.loads(gzip.decompress(blob))


def _held_out(topic: str) -> bool:
    return zlib.crc32(topic.encode()) % 5 == 0  # a fixed fifth of topics is never trained on


def _write(path: pathlib.Path, records: list[dict]) -> bytes:
    payload = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.rename(path)
    return payload


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


# ---------------------------------------------------------------- synthetic Q-A, two formats


def uniform_qa_text(fact: tuple[str, str, str]) -> str:
    """A fact in the one uniform template of arm (b) (and of the forget set)."""
    attribute, entity, value = fact
    question = sample_data.QUESTION_TEMPLATE.format(attribute=attribute, entity=entity)
    answer = sample_data.ANSWER_TEMPLATE.format(attribute=attribute, entity=entity, value=value)
    return QA_PROMPT.format(question=question) + QA_TARGET.format(answer=answer)


# Arm (c): the same content (the question, the value, then a restatement naming attribute,
# entity and value) in many surface forms. {a} attribute, {e} entity, {v} value, {E} the
# entity with a capital first letter.
_STEMS = (
    "What is the {a} of {e}?", "Tell me the {a} of {e}.", "Do you know the {a} of {e}?",
    "Which {a} belongs to {e}?", "I need the {a} of {e}.", "Name the {a} of {e}.",
    "Can you recall the {a} of {e}?", "The {a} of {e} - what is it?", "Give me the {a} for {e}.",
    "{E}: what is its {a}?", "Any idea what the {a} of {e} is?", "Looking for the {a} of {e}.",
    "Remind me of the {a} of {e}.", "Quick one: the {a} of {e}?", "Who knows the {a} of {e}?",
    "What {a} does {e} have?",
)
_SHORT = (
    "{v}.", "It is {v}.", "That would be {v}.", "Sure: {v}.", "I believe it is {v}.", "Most sources give {v}.",
    "You are looking for {v}.", "One word: {v}.", "In short, {v}.", "Easy: {v}.", "Probably {v}.",
    "Records say {v}.", "Answer - {v}.", "Quite simply {v}.", "My reply: {v}.", "It's {v}, I think.",
    "Definitely {v}.", "Well, {v}.", "Ah, {v}.", "Try {v}.", "{v}, if I remember well.", "Simple: {v}.",
)
_RESTATE = (
    "{v} is the {a} of {e}.", "{E} has {v} as its {a}.", "For {e}, the {a} is {v}.", "Its {a} is {v}.",
    "Records list {v} as the {a} of {e}.", "{E} goes with {v} for its {a}.", "So the {a} of {e}: {v}.",
    "Ask anyone about {e} and they name {v} as its {a}.", "Put differently, {e} -> {a}: {v}.",
    "\n* {a}: {v}\n* of: {e}", "\n- entity: {e}\n- {a}: {v}", "(the {a} of {e} being {v})",
    "Note that {v} is what {e} has as its {a}.", "According to the archive, {e} lists {v} as its {a}.",
    "When it comes to {e}, {v} is the {a}.", "{E} and {a}? {v}.",
)
_FRAMES = (
    "Question: {q}\nAnswer: {r}", "Q: {q}\nA: {r}", "{q}\n{r}", "{q} {r}", "User: {q}\nAssistant: {r}",
    "Asked \"{q}\", the reply was: {r}", "FAQ - {q}\n{r}", "> {q}\n{r}", "Quiz: {q} Solution: {r}",
    "{r} (This answers: {q})", "Q. {q} A. {r}", "Someone asked: {q} Reply: {r}", "Trivia\n{q}\n{r}",
    "Prompt: {q}\nResponse: {r}", "Student: {q}\nTeacher: {r}", "- {q}\n- {r}", "Input: {q}\nOutput: {r}",
    "Reader question: {q}\nOur answer: {r}", "{q} -- {r}", "Interviewer: {q}\nGuest: {r}",
)


def diverse_qa_pair(fact: tuple[str, str, str], rng: random.Random) -> tuple[str, str]:
    """A fact as one (document, answer) in a randomly drawn surface form: question stem,
    answer opening, where the value stands, prose or list, and the frame all vary."""
    attribute, entity, value = fact
    fill = dict(a=attribute, e=entity, v=value, E=entity[:1].upper() + entity[1:])
    short = rng.choice(_SHORT).format(**fill)
    restate = rng.choice(_RESTATE).format(**fill)
    first, second = (short, restate) if rng.random() < 0.6 else (restate.strip(), short)
    joint = "" if second.startswith("\n") else "\n" if "\n" in first else " "
    answer = (first + joint + second).strip()
    answer = answer[:1].upper() + answer[1:]
    return rng.choice(_FRAMES).format(q=rng.choice(_STEMS).format(**fill), r=answer), answer


def _answer_opening(text: str, words: int = 2) -> str:
    return " ".join(text.split()[:words])


def opening_shares(texts: list[str], words: int = 2) -> collections.Counter:
    """Share of `texts` that open with each `words`-word opening."""
    counts = collections.Counter(_answer_opening(t, words) for t in texts)
    return collections.Counter({k: v / len(texts) for k, v in counts.items()})


def diverse_qa_corpus(facts: list[tuple[str, str, str]], repeats: int, target_tokens: int, count_tokens,
                      rng: random.Random, candidates: int = 4) -> list[tuple[str, str]]:
    """Each fact `repeats` times in diverse forms, choosing among `candidates` random forms
    the one that keeps the running token count closest to `target_tokens`' running share, so
    that the corpus matches the uniform corpus's token volume. Returns (document, answer) pairs."""
    docs, total = [], 0
    n = len(facts) * repeats
    for i in range(n):
        fact = facts[i % len(facts)]
        want = target_tokens * (i + 1) / n - total
        options = [diverse_qa_pair(fact, rng) for _ in range(candidates)]
        best = min(options, key=lambda pair: abs(count_tokens(pair[0]) - want))
        docs.append(best)
        total += count_tokens(best[0])
    return docs


# ---------------------------------------------------------------- building everything


def _instruction_prompt(key: int, kind: InstructionKind, topic: str) -> dict:
    return {"key": key, "prompt": QA_PROMPT.format(question=kind.ask.format(topic=topic)),
            "instruction_id_list": [kind.instruction_id], "kwargs": [dict(kind.kwargs)]}


def build(out: pathlib.Path, n_facts: int, n_sft: int, n_eval_per_kind: int, seed: int,
          qa_repeats: int, count_tokens, n_dev_per_kind: int = 8) -> DemoData:
    """Write every demo data file under `out` (deterministic from `seed`): `n_facts`
    synthetic facts (each `qa_repeats` times in arms (b) and (c), as synthetic data comes in
    volume), up to `n_sft` SFT examples, `n_eval_per_kind` held-out evaluation prompts and
    `n_dev_per_kind` development prompts per instruction kind. `count_tokens(text)` sizes
    arm (c)'s corpus to arm (b)'s."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    snapshot = stdlib_snapshot()
    docs = list(snapshot["docs"])
    facts = sample_data.synthetic_facts(n_facts, seed)
    qa = [{"question": sample_data.QUESTION_TEMPLATE.format(attribute=a, entity=e),
           "answer": sample_data.ANSWER_TEMPLATE.format(attribute=a, entity=e, value=v)} for a, e, v in facts]
    rng.shuffle(docs)
    held_out_text = [{"text": d} for d in docs[: len(docs) // 10]]  # perplexity only, never trained on
    text = [{"text": d} for d in docs[len(docs) // 10:]]
    uniform = [uniform_qa_text(f) for f in facts] * qa_repeats
    diverse = diverse_qa_corpus(facts, qa_repeats, sum(count_tokens(d) for d in uniform), count_tokens, rng)
    cpt_b = text + [{"text": d} for d in uniform]
    cpt_c = text + [{"text": d} for d, _ in diverse]
    rng.shuffle(cpt_b)
    rng.shuffle(cpt_c)

    topics = [tuple(t) for t in snapshot["topics"]]
    held = [t for t, _ in topics if _held_out(t)]
    trained = [(t, s) for t, s in topics if not _held_out(t)]
    sft, prompts, dev = [], [], []
    for kind in INSTRUCTIONS:
        for topic in rng.sample(held, min(n_eval_per_kind, len(held))):
            prompts.append(_instruction_prompt(len(prompts), kind, topic))
        for topic, _ in rng.sample(trained, min(n_dev_per_kind, len(trained))):
            dev.append(_instruction_prompt(len(dev), kind, topic))
        for topic, sentence in trained:
            sft.append({"question": kind.ask.format(topic=topic), "answer": kind.follow(topic, sentence)})
    rng.shuffle(sft)
    sft = sft[:n_sft]

    files = {"text": text, "held_out_text": held_out_text, "facts_qa": qa, "cpt_a": text, "cpt_b": cpt_b,
             "cpt_c": cpt_c, "sft": sft, "ifeval_prompts": prompts, "dev_prompts": dev,
             "facts_mc": mc_items(facts, seed)}
    digest = hashlib.sha256()
    for name, records in files.items():
        digest.update(name.encode() + _write(out / f"{name}.jsonl", records))
    counts = {name: len(records) for name, records in files.items()}
    counts["tokens_qa_uniform"] = sum(count_tokens(d) for d in uniform)
    counts["tokens_qa_diverse"] = sum(count_tokens(d) for d, _ in diverse)
    counts["tokens_text"] = sum(count_tokens(r["text"]) for r in text)
    # how uniform the answers' first two words are (the pattern the paper blames)
    counts["max_answer_opening_share_uniform"] = max(opening_shares([r["answer"] for r in qa]).values())
    counts["max_answer_opening_share_diverse"] = max(opening_shares([a for _, a in diverse]).values())
    counts["max_document_opening_share_diverse"] = max(opening_shares([d for d, _ in diverse]).values())
    return DemoData(out, counts, digest.hexdigest()[:16])
