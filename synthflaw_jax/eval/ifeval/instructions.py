"""The 25 IFEval instruction checkers (Zhou et al. 2023, arXiv:2311.07911).

Each checker takes the response and the instruction's validated arguments and returns
whether the response follows the instruction. The rules (regexes, "less than" /
"at least" relations, what counts as a bullet, a section, a paragraph...) follow the
published reference implementation (google-research `instruction_following_eval`,
version of 2023-11-14) so that scores are comparable with published IFEval numbers;
only sentence counting differs (see `text.py`). Quirks of the reference are kept on
purpose, e.g. keywords are matched as regular expressions and a failed language
detection counts as followed.
"""
from __future__ import annotations

import collections
import json
import re
from functools import lru_cache

from synthflaw_jax.eval.ifeval import text

LESS_THAN = "less than"
AT_LEAST = "at least"
RELATIONS = (LESS_THAN, AT_LEAST)

CONSTRAINED_RESPONSE_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def compare(count: int, relation: str, threshold: int) -> bool:
    """`count < threshold` for "less than", `count >= threshold` for "at least"."""
    if relation == LESS_THAN:
        return count < threshold
    return count >= threshold


# --------------------------------------------------------------------------------------
# Language detection (langdetect, with a private seeded factory for determinism)
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _language_factory():
    """A langdetect DetectorFactory with all profiles loaded and a fixed seed."""
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.seed = 0  # langdetect samples n-grams at random; a seed makes it repeatable
    return factory


def supported_languages() -> tuple[str, ...]:
    """The language codes langdetect can return (ISO 639-1, plus zh-cn / zh-tw)."""
    return tuple(_language_factory().get_lang_list())


def detect_language(value: str) -> str | None:
    """langdetect's language code for `value`, or None when it finds no features."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_factory().create()
    detector.append(value)
    try:
        return detector.detect()
    except LangDetectException:
        return None


# --------------------------------------------------------------------------------------
# keywords:*
# --------------------------------------------------------------------------------------


def keywords_existence(response: str, *, keywords: list[str]) -> bool:
    """Every keyword occurs (case-insensitive regex search)."""
    return all(re.search(k, response, flags=re.IGNORECASE) for k in keywords)


def keywords_frequency(response: str, *, keyword: str, frequency: int, relation: str) -> bool:
    """The keyword occurs less than / at least `frequency` times (case-insensitive)."""
    count = len(re.findall(keyword.strip(), response, flags=re.IGNORECASE))
    return compare(count, relation, frequency)


def keywords_forbidden_words(response: str, *, forbidden_words: list[str]) -> bool:
    """No forbidden word occurs as a whole word (case-insensitive)."""
    return not any(
        re.search(r"\b" + w + r"\b", response, flags=re.IGNORECASE) for w in forbidden_words
    )


def keywords_letter_frequency(
    response: str, *, letter: str, let_frequency: int, let_relation: str
) -> bool:
    """The letter (case-insensitive) occurs less than / at least `let_frequency` times."""
    count = collections.Counter(response.lower())[letter.strip().lower()]
    return compare(count, let_relation, let_frequency)


# --------------------------------------------------------------------------------------
# language:*
# --------------------------------------------------------------------------------------


def language_response_language(response: str, *, language: str) -> bool:
    """langdetect finds `language`; undetectable text counts as followed (as the reference)."""
    detected = detect_language(response)
    return detected is None or detected == language


# --------------------------------------------------------------------------------------
# length_constraints:*
# --------------------------------------------------------------------------------------


def length_number_sentences(response: str, *, num_sentences: int, relation: str) -> bool:
    """The sentence count is less than / at least `num_sentences`."""
    return compare(text.count_sentences(response), relation, num_sentences)


def length_number_paragraphs(response: str, *, num_paragraphs: int) -> bool:
    """Exactly `num_paragraphs` paragraphs separated by the markdown divider `***`.

    Empty text before the first or after the last divider is ignored; an empty
    paragraph between two dividers fails the instruction.
    """
    paragraphs = re.split(r"\s?\*\*\*\s?", response)
    count = len(paragraphs)
    for i, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if i in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False
    return count == num_paragraphs


def length_number_words(response: str, *, num_words: int, relation: str) -> bool:
    """The `\\w+` word count is less than / at least `num_words`."""
    return compare(text.count_words(response), relation, num_words)


_FIRST_WORD_STOP = frozenset(".,?!'\"")


def length_nth_paragraph_first_word(
    response: str, *, num_paragraphs: int, nth_paragraph: int, first_word: str
) -> bool:
    """Exactly `num_paragraphs` paragraphs split on blank lines ("\\n\\n"), and paragraph
    `nth_paragraph` (1-based) starts with `first_word` (case-insensitive).

    As in the reference, the paragraph is picked by position in the raw split (empty
    pieces included) while the count leaves empty pieces out.
    """
    paragraphs = re.split(r"\n\n", response)
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    found = ""
    for ch in word:
        if ch in _FIRST_WORD_STOP:
            break
        found += ch.lower()
    return count == num_paragraphs and found == first_word.lower()


# --------------------------------------------------------------------------------------
# detectable_content:*
# --------------------------------------------------------------------------------------


def content_number_placeholders(response: str, *, num_placeholders: int) -> bool:
    """At least `num_placeholders` square-bracket placeholders such as [address]."""
    return len(re.findall(r"\[.*?\]", response)) >= num_placeholders


def content_postscript(response: str, *, postscript_marker: str) -> bool:
    """A line (after optional spaces) starts with the postscript marker, any case."""
    marker = postscript_marker.strip()
    value = response.lower()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    return bool(re.findall(pattern, value, flags=re.MULTILINE))


# --------------------------------------------------------------------------------------
# detectable_format:*
# --------------------------------------------------------------------------------------


def format_number_bullet_lists(response: str, *, num_bullets: int) -> bool:
    """Exactly `num_bullets` markdown bullet lines (starting with `* ` or `-`)."""
    stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def format_constrained_response(response: str) -> bool:
    """Contains one of "My answer is yes.", "My answer is no.", "My answer is maybe."."""
    value = response.strip()
    return any(option in value for option in CONSTRAINED_RESPONSE_OPTIONS)


def format_number_highlighted_sections(response: str, *, num_highlights: int) -> bool:
    """At least `num_highlights` non-empty *highlighted* or **bold** spans on one line.

    As in the reference, single-star and double-star spans are counted by two separate
    regexes, so "*a* and **b**" counts 2 (a bold span's inner "**" pieces are empty).
    """
    count = 0
    for h in re.findall(r"\*[^\n\*]*\*", response):
        if h.strip("*").strip():
            count += 1
    for h in re.findall(r"\*\*[^\n\*]*\*\*", response):
        if h.removeprefix("**").removesuffix("**").strip():
            count += 1
    return count >= num_highlights


def format_multiple_sections(response: str, *, section_spliter: str, num_sections: int) -> bool:
    """At least `num_sections` sections, each opened by "<spliter> <number>"."""
    pattern = r"\s?" + section_spliter.strip() + r"\s?\d+\s?"
    return len(re.split(pattern, response)) - 1 >= num_sections


def format_json(response: str) -> bool:
    """The whole response is JSON, optionally inside a ``` / ```json fence."""
    value = (
        response.strip()
        .removeprefix("```json")
        .removeprefix("```Json")
        .removeprefix("```JSON")
        .removeprefix("```")
        .removesuffix("```")
        .strip()
    )
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def format_title(response: str) -> bool:
    """Contains a non-empty title in double angular brackets, such as <<poem of joy>>."""
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))


# --------------------------------------------------------------------------------------
# combination:*
# --------------------------------------------------------------------------------------


def combination_two_responses(response: str) -> bool:
    """Exactly two different non-empty responses separated by "******"."""
    parts = response.split("******")
    valid = []
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def combination_repeat_prompt(response: str, *, prompt_to_repeat: str) -> bool:
    """The response starts with the request, repeated word for word (case-insensitive)."""
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


# --------------------------------------------------------------------------------------
# startend:*
# --------------------------------------------------------------------------------------


def startend_end_checker(response: str, *, end_phrase: str) -> bool:
    """The response (stripped of spaces and double quotes) ends with the phrase, any case."""
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def startend_quotation(response: str) -> bool:
    """The whole (stripped) response is wrapped in double quotation marks."""
    value = response.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


# --------------------------------------------------------------------------------------
# change_case:* and punctuation:*
# --------------------------------------------------------------------------------------


def case_capital_word_frequency(
    response: str, *, capital_frequency: int, capital_relation: str
) -> bool:
    """Words in all capitals occur less than / at least `capital_frequency` times."""
    return compare(text.count_capital_words(response), capital_relation, capital_frequency)


def case_english_capital(response: str) -> bool:
    """All capital letters, and English (undetectable text counts as English)."""
    if not response.isupper():
        return False
    return detect_language(response) in (None, "en")


def case_english_lowercase(response: str) -> bool:
    """All lowercase letters, and English (undetectable text counts as English)."""
    if not response.islower():
        return False
    return detect_language(response) in (None, "en")


def punctuation_no_comma(response: str) -> bool:
    """No comma anywhere."""
    return "," not in response
