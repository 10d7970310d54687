"""Multiple choice by log-likelihood: each option is scored as the continuation of the question.

Inputs: JSONL (`question`, `choices` list or `option1..optionN`, `answer` as 0-based index,
letter or the option's text, optional `subject`; TOFU's `.json` files are JSON lines too) or
the MMLU CSV layout (question, A, B, C, D, answer letter; no header; the subject is the file
name without `_test`/`_dev`/`_val`). A directory means every such file in it.

Prompt (`style="text"`, the default): "Question: {q}\\nAnswer:" continued by " {option}".
`style="letter"` lists the options as "A. ..." and scores " A", " B", ... (MMLU's layout).
`k`-shot prompts put k solved items first, separated by blank lines. The prediction is the
option with the highest summed log-probability (`acc`); `acc_norm` divides it by the
option's length in UTF-8 bytes (as lm-evaluation-harness does).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import pathlib
import re
from typing import Any, Sequence

import numpy as np

from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.eval import loglik
from synthflaw_jax.jsonl import iter_objects

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
STYLES = ("text", "letter")
_SUFFIXES = (".jsonl", ".json", ".csv")


@dataclasses.dataclass(frozen=True)
class Item:
    """One question with its options, the index of the right one, its subject and origin."""

    question: str
    choices: tuple[str, ...]
    answer: int
    subject: str
    source: str  # "file:line"


def _subject_from_name(path: pathlib.Path) -> str:
    return re.sub(r"_(test|dev|val|validation|train)$", "", path.stem)


def _answer_index(raw: Any, choices: Sequence[str], where: str) -> int:
    if isinstance(raw, bool):
        raise SynthflawError(f"{where}: field 'answer' must be an index, a letter or an option's text, got {raw!r}")
    if isinstance(raw, int):
        if not 0 <= raw < len(choices):
            raise SynthflawError(f"{where}: answer index {raw} is outside 0..{len(choices) - 1}")
        return raw
    if isinstance(raw, str):
        if raw in choices:
            return list(choices).index(raw)
        letter = raw.strip()
        if len(letter) == 1 and letter.upper() in LETTERS[:len(choices)]:
            return LETTERS.index(letter.upper())
        raise SynthflawError(
            f"{where}: answer {raw!r} is neither a letter A-{LETTERS[len(choices) - 1]} nor one of the options")
    raise SynthflawError(
        f"{where}: field 'answer' must be an index, a letter or an option's text, got {type(raw).__name__}")


def _item_from_object(obj: dict, where: str, subject: str) -> Item:
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise SynthflawError(f"{where}: field 'question' must be a non-empty string")
    if "choices" in obj:
        choices = obj["choices"]
        if not isinstance(choices, list):
            raise SynthflawError(f"{where}: field 'choices' must be a list of strings")
    else:
        choices, k = [], 1
        while f"option{k}" in obj:
            choices.append(obj[f"option{k}"])
            k += 1
        if not choices:
            raise SynthflawError(f"{where}: needs a 'choices' list or fields 'option1', 'option2', ...")
    if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise SynthflawError(f"{where}: needs at least 2 options, each a non-empty string")
    if len(choices) > len(LETTERS):
        raise SynthflawError(f"{where}: more than {len(LETTERS)} options")
    if "answer" not in obj:
        raise SynthflawError(f"{where}: missing field 'answer'")
    answer = _answer_index(obj["answer"], choices, where)
    subj = obj.get("subject", subject)
    if not isinstance(subj, str):
        raise SynthflawError(f"{where}: field 'subject' must be a string")
    return Item(question, tuple(choices), answer, subj, where)


def _load_json(path: pathlib.Path) -> list[Item]:
    subject = _subject_from_name(path)
    try:
        head = path.read_text(encoding="utf-8").lstrip()[:1]
    except (OSError, UnicodeDecodeError) as err:
        raise SynthflawError(f"{path}: cannot read as UTF-8 text ({err})") from None
    if head == "[":  # a JSON array rather than JSON lines
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise SynthflawError(f"{path}:{err.lineno}: bad JSON ({err.msg})") from None
        items = []
        for i, obj in enumerate(rows):
            if not isinstance(obj, dict):
                raise SynthflawError(f"{path} element {i}: expected a JSON object")
            items.append(_item_from_object(obj, f"{path} element {i}", subject))
        return items
    return [_item_from_object(obj, f"{path}:{n}", subject) for n, obj in iter_objects(path)]


def _load_csv(path: pathlib.Path) -> list[Item]:
    subject = _subject_from_name(path)
    items = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f), start=1):
                if not row or not any(c.strip() for c in row):
                    continue
                where = f"{path}:{n}"
                if n == 1 and row[-1].strip().lower() == "answer":
                    continue  # a header row
                if len(row) < 4:
                    raise SynthflawError(f"{where}: expected question, at least 2 options and an answer letter; "
                                         f"got {len(row)} columns")
                question, choices, answer = row[0], row[1:-1], row[-1].strip()
                if len(answer) != 1 or answer.upper() not in LETTERS[:len(choices)]:
                    raise SynthflawError(f"{where}: last column must be an answer letter "
                                         f"A-{LETTERS[len(choices) - 1]}, got {answer!r}")
                items.append(_item_from_object(
                    {"question": question, "choices": choices, "answer": answer}, where, subject))
    except UnicodeDecodeError as err:
        raise SynthflawError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except csv.Error as err:
        raise SynthflawError(f"{path}: malformed CSV ({err})") from None
    return items


def load_items(path) -> list[Item]:
    """Items from a JSONL/JSON/CSV file, or from every such file in a directory (sorted by
    name), local or in a bucket (gs://, downloaded first)."""
    from synthflaw_jax import runtime

    path = pathlib.Path(runtime.local_input(path))
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES)
        if not files:
            raise SynthflawError(f"{path}: no .jsonl, .json or .csv files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise SynthflawError(f"{path}: no such file or directory")
    items = []
    for f in files:
        if f.suffix not in _SUFFIXES:
            raise SynthflawError(f"{f}: unknown format (expected .jsonl, .json or .csv)")
        loaded = _load_csv(f) if f.suffix == ".csv" else _load_json(f)
        if not loaded:
            raise SynthflawError(f"{f}: no questions in the file")
        items += loaded
    return items


# ---------------------------------------------------------------------------- prompts

def format_question(item: Item, style: str = "text") -> str:
    """The question as the model sees it, ending in "Answer:"."""
    if style == "letter":
        options = "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(item.choices))
        return f"Question: {item.question}\n{options}Answer:"
    return f"Question: {item.question}\nAnswer:"


def continuation(item: Item, k: int, style: str = "text") -> str:
    """The text scored for option k (with its leading space)."""
    return f" {LETTERS[k]}" if style == "letter" else f" {item.choices[k]}"


def choose_shots(items: Sequence[Item], dev: Sequence[Item] | None, shots: int, seed: int) -> list[list[Item]]:
    """For each item, `shots` solved examples: from `dev` when given, else from `items`
    without the item itself; same-subject examples when there are enough. Item i draws with
    `numpy.random.default_rng([seed, i])`, so the choice does not depend on batching."""
    if shots <= 0:
        return [[] for _ in items]
    pool_all = list(dev) if dev is not None else list(items)
    by_subject: dict[str, list[int]] = {}
    for j, it in enumerate(pool_all):
        by_subject.setdefault(it.subject, []).append(j)
    chosen = []
    for i, item in enumerate(items):
        exclude = i if dev is None else -1
        same = [j for j in by_subject.get(item.subject, []) if j != exclude]
        pool = same if len(same) >= shots else [j for j in range(len(pool_all)) if j != exclude]
        if len(pool) < shots:
            raise SynthflawError(f"--shots {shots}: only {len(pool)} examples available for {item.source}")
        rng = np.random.default_rng([seed, i])
        chosen.append([pool_all[j] for j in rng.choice(pool, size=shots, replace=False)])
    return chosen


def build_context(item: Item, shots: Sequence[Item], style: str = "text") -> str:
    """The few-shot examples (each with its right answer) followed by the question."""
    solved = "".join(format_question(s, style) + continuation(s, s.answer, style) + "\n\n" for s in shots)
    return solved + format_question(item, style)


def build_requests(tokenizer, items: Sequence[Item], contexts: Sequence[str], style: str, max_length: int,
                   vocab_size: int) -> list[list[loglik.Request]]:
    """Per item, one request per option: context ids (with the tokenizer's BOS) + option ids,
    the option's tokens weighted 1; contexts longer than `max_length` lose their start."""
    out, truncated = [], 0
    for item, ctx in zip(items, contexts):
        ctx_ids = list(tokenizer(ctx)["input_ids"])
        loglik.check_ids(ctx_ids, vocab_size, item.source)
        reqs = []
        for k in range(len(item.choices)):
            cont = list(tokenizer(continuation(item, k, style), add_special_tokens=False)["input_ids"])
            loglik.check_ids(cont, vocab_size, item.source)
            if not cont:
                raise SynthflawError(f"{item.source}: option {k + 1} tokenizes to nothing")
            keep = max_length - len(cont)
            if keep < 1:
                raise SynthflawError(f"{item.source}: option {k + 1} is longer than the model's {max_length} positions")
            ids = ctx_ids[-keep:] if len(ctx_ids) > keep else ctx_ids
            truncated += len(ids) < len(ctx_ids)
            reqs.append(loglik.Request(ids + cont, [0.0] * len(ids) + [1.0] * len(cont)))
        out.append(reqs)
    if truncated:
        log.warning("%d option sequences were longer than %d tokens; their contexts lost their start",
                    truncated, max_length)
    return out


# ---------------------------------------------------------------------------- scoring

def evaluate(model: Any, items: Sequence[Item], *, shots: int = 0, dev: Sequence[Item] | None = None,
             seed: int = 0, style: str = "text", batch_size: int = 8,
             progress: bool | str = False) -> tuple[dict, list[dict]]:
    """(metrics, per-item records) of a model (a `LoadedModel`, a path or a loader) on these items;
    `progress` (True or a label) shows a bar of the option sequences scored."""
    if style not in STYLES:
        raise SynthflawError(f"--style must be one of {', '.join(STYLES)}, got {style!r}")
    if batch_size < 1:
        raise SynthflawError(f"--batch-size must be >= 1, got {batch_size}")
    if shots < 0:
        raise SynthflawError(f"--shots must be >= 0, got {shots}")
    contexts = [build_context(it, s, style) for it, s in zip(items, choose_shots(items, dev, shots, seed))]
    model = loglik.as_model(model)
    tok = loglik.require_tokenizer(model)
    cfg = model.config
    requests = build_requests(tok, items, contexts, style, cfg.max_position_embeddings, cfg.vocab_size)
    flat = [r for reqs in requests for r in reqs]
    scores = iter(loglik.score_requests(model, flat, batch_size, progress="multiple choice" if progress is True
                                        else progress))
    records = []
    for item, ctx in zip(items, contexts):
        s = [next(scores) for _ in item.choices]
        lp = np.array([x.logprob for x in s])
        nbytes = np.array([len(continuation(item, k, style).encode("utf-8")) for k in range(len(item.choices))])
        pred, pred_norm = int(np.argmax(lp)), int(np.argmax(lp / nbytes))
        records.append({
            "source": item.source, "subject": item.subject, "question": item.question,
            "choices": list(item.choices), "answer": item.answer, "logprobs": lp.tolist(),
            "option_tokens": [x.tokens for x in s], "pred": pred, "pred_norm": pred_norm,
            "correct": pred == item.answer, "correct_norm": pred_norm == item.answer,
        })
    return summarize(records, shots=shots, seed=seed, style=style), records


def _accuracy(records: Sequence[dict]) -> dict[str, Any]:
    n = len(records)
    return {
        "acc": sum(r["correct"] for r in records) / n,
        "acc_norm": sum(r["correct_norm"] for r in records) / n,
        "n": n,
    }


def summarize(records: Sequence[dict], **settings) -> dict[str, Any]:
    """Overall and per-subject accuracy (`acc`, `acc_norm`, `n`) plus the settings used."""
    if not records:
        raise SynthflawError("no multiple-choice items to score")
    subjects: dict[str, list[dict]] = {}
    for r in records:
        subjects.setdefault(r["subject"], []).append(r)
    metrics = _accuracy(records)
    metrics["per_subject"] = {s: _accuracy(rs) for s, rs in sorted(subjects.items())}
    metrics.update(settings)
    return metrics


def run(model: Any, data, out, *, dev=None, shots: int = 0, seed: int = 0, style: str = "text",
        batch_size: int = 8, overwrite: bool = False, inputs=(), progress: bool = False) -> dict[str, Any]:
    """Evaluate and write `OUT/metrics.json` and `OUT/per_item.jsonl`; returns the metrics.
    `inputs`: other paths read (the model), which `out` may not be or nest with."""
    from synthflaw_jax import outputs

    inputs = [*inputs, data, dev]
    outputs.check(out, overwrite, inputs=inputs, what="--out")
    items = load_items(data)
    dev_items = load_items(dev) if dev is not None else None
    metrics, records = evaluate(model, items, shots=shots, dev=dev_items, seed=seed, style=style, batch_size=batch_size,
                                progress=progress)
    metrics["data"] = str(data)
    if dev is not None:
        metrics["dev"] = str(dev)
    with outputs.directory(out, overwrite, inputs=inputs, what="--out") as tmp:
        write_results(tmp, metrics, records)
    return metrics


def write_results(out: pathlib.Path, metrics: dict, records: Sequence[dict]) -> None:
    """`metrics.json` and `per_item.jsonl` into an existing directory."""
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "per_item.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
