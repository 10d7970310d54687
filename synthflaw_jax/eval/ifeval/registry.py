"""IFEval instruction ids -> checker and argument schema, with kwargs validation.

`build_checker(instruction_id, kwargs, prompt)` validates the arguments of one
instruction and returns a `response -> bool` function. Bad ids or arguments raise
`InstructionArgsError` (a ValueError); `io.py` turns it into a SynthflawError naming the
file, line and instruction.

Arguments whose value is null are ignored: the published data files (the Hugging Face
copy in particular) list every argument name with null for the unused ones.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

from synthflaw_jax.eval.ifeval import instructions as ins

# The sentence every original IFEval repeat-prompt request ends with; the request to
# repeat is the prompt text before it (used when `prompt_to_repeat` is not given, as in
# the 2023-11-14 release of the prompts).
REPEAT_PROMPT_SENTENCE = "First repeat the request word for word without change"


class InstructionArgsError(ValueError):
    """An unknown instruction id or arguments that do not fit the instruction."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One argument of an instruction: its name, kind and whether it must be given."""

    name: str
    # "int" (>= 0), "positive_int" (>= 1), "str", "regex" (a string IFEval matches as a
    # regular expression), "regex_list", "relation", "letter" (one character), "language"
    kind: str
    required: bool = True


@dataclasses.dataclass(frozen=True)
class InstructionSpec:
    """An instruction id, its checker and its arguments."""

    instruction_id: str
    check: Callable[..., bool]
    params: tuple[Param, ...] = ()


def _spec(iid: str, check: Callable[..., bool], *params: Param) -> InstructionSpec:
    return InstructionSpec(iid, check, tuple(params))


_INT = "int"
_POS = "positive_int"

REGISTRY: dict[str, InstructionSpec] = {
    s.instruction_id: s
    for s in [
        _spec("keywords:existence", ins.keywords_existence, Param("keywords", "regex_list")),
        _spec(
            "keywords:frequency",
            ins.keywords_frequency,
            Param("keyword", "regex"),
            Param("frequency", _INT),
            Param("relation", "relation"),
        ),
        _spec(
            "keywords:forbidden_words",
            ins.keywords_forbidden_words,
            Param("forbidden_words", "regex_list"),
        ),
        _spec(
            "keywords:letter_frequency",
            ins.keywords_letter_frequency,
            Param("letter", "letter"),
            Param("let_frequency", _INT),
            Param("let_relation", "relation"),
        ),
        _spec(
            "language:response_language",
            ins.language_response_language,
            Param("language", "language"),
        ),
        _spec(
            "length_constraints:number_sentences",
            ins.length_number_sentences,
            Param("num_sentences", _INT),
            Param("relation", "relation"),
        ),
        _spec(
            "length_constraints:number_paragraphs",
            ins.length_number_paragraphs,
            Param("num_paragraphs", _INT),
        ),
        _spec(
            "length_constraints:number_words",
            ins.length_number_words,
            Param("num_words", _INT),
            Param("relation", "relation"),
        ),
        _spec(
            "length_constraints:nth_paragraph_first_word",
            ins.length_nth_paragraph_first_word,
            Param("num_paragraphs", _POS),
            Param("nth_paragraph", _POS),
            Param("first_word", "str"),
        ),
        _spec(
            "detectable_content:number_placeholders",
            ins.content_number_placeholders,
            Param("num_placeholders", _INT),
        ),
        _spec(
            "detectable_content:postscript",
            ins.content_postscript,
            Param("postscript_marker", "regex"),
        ),
        _spec(
            "detectable_format:number_bullet_lists",
            ins.format_number_bullet_lists,
            Param("num_bullets", _INT),
        ),
        _spec("detectable_format:constrained_response", ins.format_constrained_response),
        _spec(
            "detectable_format:number_highlighted_sections",
            ins.format_number_highlighted_sections,
            Param("num_highlights", _INT),
        ),
        _spec(
            "detectable_format:multiple_sections",
            ins.format_multiple_sections,
            Param("section_spliter", "regex"),
            Param("num_sections", _INT),
        ),
        _spec("detectable_format:json_format", ins.format_json),
        _spec("detectable_format:title", ins.format_title),
        _spec("combination:two_responses", ins.combination_two_responses),
        _spec(
            "combination:repeat_prompt",
            ins.combination_repeat_prompt,
            Param("prompt_to_repeat", "str", required=False),
        ),
        _spec("startend:end_checker", ins.startend_end_checker, Param("end_phrase", "str")),
        _spec(
            "change_case:capital_word_frequency",
            ins.case_capital_word_frequency,
            Param("capital_frequency", _INT),
            Param("capital_relation", "relation"),
        ),
        _spec("change_case:english_capital", ins.case_english_capital),
        _spec("change_case:english_lowercase", ins.case_english_lowercase),
        _spec("punctuation:no_comma", ins.punctuation_no_comma),
        _spec("startend:quotation", ins.startend_quotation),
    ]
}

INSTRUCTION_IDS: tuple[str, ...] = tuple(sorted(REGISTRY))


def _check_value(param: Param, value: Any) -> Any:
    """The validated (normalised) value of one argument; raises InstructionArgsError."""
    name, kind = param.name, param.kind
    if kind in (_INT, _POS):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InstructionArgsError(f"argument '{name}' must be an integer, got {value!r}")
        low = 1 if kind == _POS else 0
        if value < low:
            raise InstructionArgsError(f"argument '{name}' must be >= {low}, got {value}")
        return value
    if kind == "relation":
        if value not in ins.RELATIONS:
            raise InstructionArgsError(
                f"argument '{name}' must be one of {list(ins.RELATIONS)}, got {value!r}"
            )
        return value
    if kind == "regex_list":
        if not isinstance(value, list) or not value:
            raise InstructionArgsError(
                f"argument '{name}' must be a non-empty list of strings, got {value!r}"
            )
        return [_check_value(Param(name, "regex"), v) for v in value]
    if not isinstance(value, str) or not value.strip():
        raise InstructionArgsError(f"argument '{name}' must be a non-empty string, got {value!r}")
    if kind == "regex":
        # IFEval matches keywords, markers and section splitters as regular expressions.
        try:
            re.compile(value)
        except re.error as err:
            raise InstructionArgsError(
                f"argument '{name}' = {value!r} is not a valid regular expression "
                f"(IFEval matches it as one): {err}"
            ) from None
    elif kind == "letter":
        # One character; the current prompt set also counts a symbol ("#").
        if len(value.strip()) != 1:
            raise InstructionArgsError(f"argument '{name}' must be one character, got {value!r}")
    elif kind == "language":
        langs = ins.supported_languages()
        if value not in langs:
            raise InstructionArgsError(
                f"argument '{name}' = {value!r} is not a language code langdetect knows "
                f"({', '.join(langs)})"
            )
    return value


def validate(instruction_id: str, kwargs: Any, prompt: str = "") -> dict[str, Any]:
    """Validated arguments of one instruction (null-valued entries dropped).

    `prompt` supplies `prompt_to_repeat` for combination:repeat_prompt when it is absent.
    """
    spec = REGISTRY.get(instruction_id)
    if spec is None:
        raise InstructionArgsError(f"unknown instruction id '{instruction_id}'")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise InstructionArgsError(
            f"kwargs of '{instruction_id}' must be an object, got {type(kwargs).__name__}"
        )
    given = {k: v for k, v in kwargs.items() if v is not None}
    known = {p.name: p for p in spec.params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        expected = ", ".join(known) or "none"
        raise InstructionArgsError(
            f"'{instruction_id}' does not take argument(s) {', '.join(unknown)} "
            f"(it takes: {expected})"
        )
    args: dict[str, Any] = {}
    for p in spec.params:
        if p.name in given:
            args[p.name] = _check_value(p, given[p.name])
        elif p.required:
            raise InstructionArgsError(f"'{instruction_id}' needs argument '{p.name}'")
    if instruction_id == "length_constraints:nth_paragraph_first_word":
        if args["nth_paragraph"] > args["num_paragraphs"]:
            raise InstructionArgsError(
                f"argument 'nth_paragraph' ({args['nth_paragraph']}) must not exceed "
                f"'num_paragraphs' ({args['num_paragraphs']})"
            )
    if instruction_id == "combination:repeat_prompt" and "prompt_to_repeat" not in args:
        idx = prompt.find(REPEAT_PROMPT_SENTENCE)
        if idx <= 0 or not prompt[:idx].strip():
            raise InstructionArgsError(
                "'combination:repeat_prompt' needs argument 'prompt_to_repeat' (it can only "
                f"be derived from prompts containing \"{REPEAT_PROMPT_SENTENCE} ...\")"
            )
        args["prompt_to_repeat"] = prompt[:idx].strip()
    return args


def build_checker(instruction_id: str, kwargs: Any, prompt: str = "") -> Callable[[str], bool]:
    """A `response -> bool` checker for one instruction with validated arguments."""
    args = validate(instruction_id, kwargs, prompt)
    check = REGISTRY[instruction_id].check

    def checker(response: str) -> bool:
        return bool(check(response, **args))

    return checker
