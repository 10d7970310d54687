"""Strict and loose IFEval scoring and the accuracy metrics.

Strict: an instruction is followed when the response is not blank and its checker
passes on the response itself. Loose (the reference's "upper bound"): it is followed
when the checker passes on any of 8 variants: the response, the response without its
first line, without its last line, without both, and each of these four with every `*`
removed (variants are stripped; blank variants never pass).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

from synthflaw_jax.eval.ifeval.registry import REGISTRY


@dataclasses.dataclass(frozen=True)
class PromptRecord:
    """One prompt of an IFEval prompt file, its instructions validated."""

    key: Any
    prompt: str
    instruction_id_list: tuple[str, ...]
    args: tuple[dict[str, Any], ...]  # validated arguments, one dict per instruction
    line: int = 0  # 1-based line in the file it came from (0: built in code)


@dataclasses.dataclass(frozen=True)
class PromptResult:
    """Which instructions of one prompt a response followed, strictly and loosely."""

    key: Any
    prompt: str
    instruction_id_list: tuple[str, ...]
    response: str
    strict: tuple[bool, ...]
    loose: tuple[bool, ...]

    @property
    def follow_all_strict(self) -> bool:
        """All instructions followed under strict checking."""
        return all(self.strict)

    @property
    def follow_all_loose(self) -> bool:
        """All instructions followed under loose checking."""
        return all(self.loose)


def response_variants(response: str) -> list[str]:
    """The 8 texts loose checking tries, in the reference's order."""
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        without_first,
        without_last,
        without_both,
        without_first.replace("*", ""),
        without_last.replace("*", ""),
        without_both.replace("*", ""),
    ]


def _follows(instruction_id: str, args: dict[str, Any], text: str) -> bool:
    return bool(text.strip()) and bool(REGISTRY[instruction_id].check(text, **args))


def score_prompt(record: PromptRecord, response: str) -> PromptResult:
    """Strict and loose results of one response to one prompt."""
    variants = response_variants(response)
    strict, loose = [], []
    for iid, args in zip(record.instruction_id_list, record.args):
        s = _follows(iid, args, response)
        strict.append(s)
        loose.append(s or any(_follows(iid, args, v) for v in variants[1:]))
    return PromptResult(
        key=record.key,
        prompt=record.prompt,
        instruction_id_list=record.instruction_id_list,
        response=response,
        strict=tuple(strict),
        loose=tuple(loose),
    )


def score(records: Sequence[PromptRecord], responses: Sequence[str]) -> list[PromptResult]:
    """Score `responses[i]` against `records[i]` for every prompt."""
    if len(records) != len(responses):
        raise ValueError(f"{len(records)} prompts but {len(responses)} responses")
    return [score_prompt(r, resp) for r, resp in zip(records, responses)]


def _accuracy_block(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    pairs = list(pairs)
    n = len(pairs)
    strict = sum(s for s, _ in pairs)
    loose = sum(lo for _, lo in pairs)
    return {
        "count": n,
        "strict_correct": strict,
        "strict_acc": strict / n if n else 0.0,
        "loose_correct": loose,
        "loose_acc": loose / n if n else 0.0,
    }


def compute_metrics(results: Sequence[PromptResult]) -> dict[str, Any]:
    """Prompt- and instruction-level strict/loose accuracy, per-type accuracy and counts.

    Accuracies are fractions in [0, 1]. `per_instruction` is keyed by instruction id,
    `per_category` by the part before ":" (e.g. "keywords"), as in the reference report.
    """
    if not results:
        raise ValueError("no results to compute metrics from")
    n_prompts = len(results)
    n_inst = sum(len(r.strict) for r in results)
    counts = {
        "prompts": n_prompts,
        "instructions": n_inst,
        "empty_responses": sum(1 for r in results if not r.response.strip()),
        "prompt_level_strict_correct": sum(r.follow_all_strict for r in results),
        "inst_level_strict_correct": sum(sum(r.strict) for r in results),
        "prompt_level_loose_correct": sum(r.follow_all_loose for r in results),
        "inst_level_loose_correct": sum(sum(r.loose) for r in results),
    }
    by_id: dict[str, list[tuple[bool, bool]]] = {}
    by_cat: dict[str, list[tuple[bool, bool]]] = {}
    for r in results:
        for iid, s, lo in zip(r.instruction_id_list, r.strict, r.loose):
            by_id.setdefault(iid, []).append((s, lo))
            by_cat.setdefault(iid.split(":")[0], []).append((s, lo))
    return {
        "prompt_level_strict_acc": counts["prompt_level_strict_correct"] / n_prompts,
        "inst_level_strict_acc": counts["inst_level_strict_correct"] / n_inst if n_inst else 0.0,
        "prompt_level_loose_acc": counts["prompt_level_loose_correct"] / n_prompts,
        "inst_level_loose_acc": counts["inst_level_loose_correct"] / n_inst if n_inst else 0.0,
        "counts": counts,
        "per_instruction": {k: _accuracy_block(v) for k, v in sorted(by_id.items())},
        "per_category": {k: _accuracy_block(v) for k, v in sorted(by_cat.items())},
    }


def result_record(result: PromptResult) -> dict[str, Any]:
    """The per-prompt JSON record written to per_prompt.jsonl."""
    return {
        "key": result.key,
        "prompt": result.prompt,
        "instruction_id_list": list(result.instruction_id_list),
        "follow_all_instructions_strict": result.follow_all_strict,
        "follow_all_instructions_loose": result.follow_all_loose,
        "follow_instruction_list_strict": list(result.strict),
        "follow_instruction_list_loose": list(result.loose),
        "response": result.response,
    }
