"""Degenerate outputs: text no checker should be asked to judge.

A small model often answers with strings such as "RETTTTTT.", "AnswerAnswerAnswer" or
nothing at all. A rule-based checker may still pass them ("no commas", "ends with
'?'"), and language detection calls such strings any language at all. Accuracy is
therefore reported next to the share of degenerate outputs, and a response only counts as
following its instruction when it is also valid (`valid_follow`).

A response is degenerate when any of these holds (`degenerate_reasons` names which):
- `empty`: fewer than `min_letters` letters;
- `char_run`: one letter repeated `max_char_run` or more times in a row;
- `word_repeat`: the same word n-gram (n = 1..3) repeated `max_ngram_repeats` or more times
  back to back;
- `low_compression`: for texts of at least `min_chars_for_ratio` characters, zlib compresses
  them below `min_compression_ratio` of their size (ordinary prose stays above ~0.5).
"""
from __future__ import annotations

import dataclasses
import re
import zlib


@dataclasses.dataclass(frozen=True)
class DegenerateRules:
    """Thresholds of the degenerate-output rules (module docstring)."""

    min_letters: int = 3
    max_char_run: int = 5
    max_ngram_repeats: int = 4
    min_chars_for_ratio: int = 80
    min_compression_ratio: float = 0.3


def _has_ngram_repeat(tokens: list[str], repeats: int) -> bool:
    """Some 1- to 3-token sequence stands `repeats` or more times back to back."""
    joined = "".join(t + " " for t in tokens)
    return re.search(r"(?<!\S)((?:\S+ ){1,3})\1{%d,}" % (repeats - 1), joined) is not None


def degenerate_reasons(text: str, rules: DegenerateRules = DegenerateRules()) -> list[str]:
    """The rules `text` breaks (empty list: a valid output)."""
    reasons = []
    if sum(ch.isalpha() for ch in text) < rules.min_letters:
        reasons.append("empty")
    if re.search(r"([^\W\d_])\1{%d,}" % (rules.max_char_run - 1), text):
        reasons.append("char_run")
    if _has_ngram_repeat(re.findall(r"\w+|[^\w\s]", text.lower()), rules.max_ngram_repeats):
        reasons.append("word_repeat")
    data = text.encode("utf-8")
    if len(data) >= rules.min_chars_for_ratio and len(zlib.compress(data, 9)) / len(data) < rules.min_compression_ratio:
        reasons.append("low_compression")
    return reasons


def is_degenerate(text: str, rules: DegenerateRules = DegenerateRules()) -> bool:
    """True when `text` breaks any degenerate-output rule."""
    return bool(degenerate_reasons(text, rules))
