"""Offline text splitting for IFEval: words, sentences and Treebank-style tokens.

The reference IFEval code counts words with NLTK's `RegexpTokenizer(r"\\w+")`, sentences
with NLTK's pretrained Punkt model (`tokenizers/punkt/english.pickle`) and all-capital
words with `nltk.word_tokenize`. Punkt's model is downloaded data, which we do not fetch,
so this module approximates it with rules and needs nothing but the standard library:

- `count_words`: identical to the reference (`\\w+` with Python's `re`, which is what
  NLTK's RegexpTokenizer uses).
- `split_sentences` / `count_sentences`: Punkt's *skeleton* (which characters can end a
  sentence, how a candidate boundary is read, how closing quotes are re-attached) with
  a small hand-written rule set standing in for the trained parameters (abbreviations,
  orthographic context, sentence starters). Newlines are not boundaries (Punkt ignores
  them too), so a bullet list without full stops is one sentence.
- `treebank_tokens`: the Penn Treebank splitting rules that NLTK's word tokenizer applies
  (quotes, punctuation, brackets, clitics such as n't and 's), enough to decide which
  tokens are all capitals.
"""
from __future__ import annotations

import re

_WORD_RE = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Number of `\\w+` runs in `text` (the reference's word count)."""
    return len(_WORD_RE.findall(text))


# --------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------

# Characters that Punkt treats as punctuation glued to a word: they may follow a
# sentence-ending character directly, and they end a word.
_NON_WORD = ")\";}]*:@'({[!?"
_SENT_END = ".?!"
_CHUNK_RE = re.compile(r"\S+")
_SPACES_RE = re.compile(r"\s*")
# Closing quotes/brackets right after a boundary belong to the sentence before it.
_REALIGN_RE = re.compile(r"[\"')\]}]+?(?:\s+|(?=--)|$)")
# Punkt's "number" type: digits with separators, optionally one final period.
_NUMBER_RE = re.compile(r"^-?[.,]?\d[\d,.-]*\.?$")
# The word glued to a final period: everything back to whitespace or a non-word mark;
# an apostrophe starts a word of its own ("can't." ends in the word "'t").
_LAST_WORD_RE = re.compile(r"'?[^\s" + re.escape(_NON_WORD) + r"]*$")
_LEADING_WORD_RE = re.compile(r"[^\W\d_]+")
_LOWER_WORD_RE = re.compile(r"(?<![\w.])[a-z]+(?![\w])")

# Abbreviations after which a period usually does not end a sentence: titles, company
# forms, months, days and a few dotted forms; lower case, without the final period.
# Like Punkt's English model (and unlike a style guide) this leaves out "e.g", "i.e"
# and "etc": Punkt ends a sentence after them.
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms messrs dr prof rev gen sen rep reps gov col lt maj capt sgt adm st
    jr sr co corp inc ltd bros cie vs ave ft mt
    jan feb aug sep sept oct nov dec mon tues wed thurs fri
    a.m p.m u.s u.k u.n u.s.a u.s.s.r ph.d d.c n.y l.a j.k
    """.split()
)
# Single letters that Punkt's English model treats as abbreviations; the others
# (a, b, i, j, o, ...) end a sentence like ordinary words unless a name follows.
_ABBREVIATION_LETTERS = frozenset("cdefghklmnprstvw")
# Frequent sentence openers: capitalised after an abbreviation, an initial or an
# ellipsis, they signal a new sentence (Punkt has a learned list of this kind).
_SENTENCE_STARTERS = frozenset(
    """
    a although an both but even he however i if in indeed instead it many meanwhile
    moreover most nevertheless nonetheless nor since so some that the their then there
    these they this those though thus we when while yet you
    """.split()
)


class _Context:
    """What the boundary rules may look up about the whole text."""

    def __init__(self, text: str):
        self.text = text
        self._lower_words: frozenset[str] | None = None

    def seen_in_lower_case(self, word: str) -> bool:
        """Whether `word` also occurs in lower case in the text (Punkt's orthographic
        evidence that it is a common word rather than a name), from the text itself."""
        if self._lower_words is None:
            self._lower_words = frozenset(_LOWER_WORD_RE.findall(self.text))
        return word.lower() in self._lower_words

    def hint(self, first_char: str, word: str) -> bool | None:
        """Does the next word start a sentence? True, False (clearly not) or None."""
        if first_char and first_char in ";:,.!?":
            return False
        if first_char.islower():
            return False
        if first_char.isupper() and word and (
            word.lower() in _SENTENCE_STARTERS or self.seen_in_lower_case(word)
        ):
            return True
        return None


def _next_word(text: str, pos: int) -> tuple[str, str]:
    """(first character, leading alphabetic word) of the text after `pos`."""
    if pos < len(text) and not text[pos].isspace():
        return text[pos], ""  # a mark glued to the end character is a token of its own
    start = _SPACES_RE.match(text, pos).end()
    if start >= len(text):
        return "", ""
    w = _LEADING_WORD_RE.match(text, start)
    return text[start], (w.group(0) if w else "")


def _period_ends_sentence(word: str, hint: bool | None, next_upper: bool) -> bool:
    """Whether a period right after `word` ends a sentence (Punkt's decision rules)."""
    if not word:
        return True  # a lone "." token
    lower = word.lower()
    is_initial = len(word) == 1 and word.isalpha()
    is_number = bool(_NUMBER_RE.match(lower + "."))
    is_abbrev = (
        lower in _ABBREVIATIONS
        or lower.split("-")[-1] in _ABBREVIATIONS
        or (is_initial and lower in _ABBREVIATION_LETTERS)
    )
    ends = not is_abbrev
    if is_abbrev and not is_initial and hint is True:
        ends = True
    if is_initial or is_number:
        if hint is False:
            ends = False
        elif hint is None and is_initial and next_upper:
            ends = False  # "J. Smith": an initial before a name
    return ends


def _is_boundary(ctx: _Context, chunk_start: int, cand: int) -> bool:
    """Decide the candidate end character at `cand` in the word starting at `chunk_start`."""
    text = ctx.text
    piece = text[chunk_start : cand + 1]
    if "?" in piece or "!" in piece:
        return True
    first_char, next_word = _next_word(text, cand + 1)
    hint = ctx.hint(first_char, next_word)
    if piece.endswith(".."):
        return hint is True  # an ellipsis ends a sentence only before a clear start
    word = _LAST_WORD_RE.search(piece[:-1]).group(0)
    return _period_ends_sentence(word, hint, first_char.isupper())


def _candidate(text: str, start: int, end: int, has_next: bool) -> int | None:
    """Position of the last end character that can close the word text[start:end]."""
    for pos in range(end - 1, start - 1, -1):
        if text[pos] in _SENT_END:
            if pos + 1 < end:
                if text[pos + 1] in _NON_WORD:
                    return pos
            elif has_next:
                return pos
    return None


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text` (an offline stand-in for Punkt)."""
    ctx = _Context(text)
    end_of_text = len(text.rstrip())
    words = [(m.start(), m.end()) for m in _CHUNK_RE.finditer(text, 0, end_of_text)]
    cuts: list[int] = []  # where each new sentence starts
    for i, (start, end) in enumerate(words):
        cand = _candidate(text, start, end, has_next=i + 1 < len(words))
        if cand is None or not _is_boundary(ctx, start, cand):
            continue
        cuts.append(cand + 1 if cand + 1 < end else words[i + 1][0])
    spans = []
    start = 0
    for cut in cuts + [end_of_text]:
        spans.append((start, cut))
        start = cut
    # Closing quotes/brackets right after a boundary move to the sentence before it.
    result: list[tuple[int, int]] = []
    shift = 0
    for i, (s, e) in enumerate(spans):
        s += shift
        shift = 0
        if i + 1 < len(spans):
            nxt = spans[i + 1]
            m = _REALIGN_RE.match(text, nxt[0], nxt[1])
            if m:
                e = nxt[0] + len(m.group(0).rstrip())
                shift = m.end() - nxt[0]
        if text[s:e].strip():
            result.append((s, e))
    return result


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped (see the module docstring for the rules)."""
    return [text[s:e].strip() for s, e in sentence_spans(text)]


def count_sentences(text: str) -> int:
    """Number of sentences in `text` (stands in for the reference's Punkt count)."""
    return len(sentence_spans(text))


# --------------------------------------------------------------------------------------
# Treebank-style tokens (for words in all capitals)
# --------------------------------------------------------------------------------------

_TB_RULES = [
    # Quotes of every kind and backticks are tokens of their own.
    (re.compile(r"([«“‘„»”’\"]|`+)"), r" \1 "),
    # An opening single quote before a one-letter word that is not a clitic.
    (re.compile(r"(?i)(')(?!re|ve|ll|m|t|s|d|n)(\w)\b"), r"\1 \2"),
    # Commas and colons, unless inside a number (3,000 / 10:30).
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),
    (re.compile(r"[;@#$%&?!*]"), r" \g<0> "),
    (re.compile(r"[\]\[(){}<>]"), r" \g<0> "),
    (re.compile(r"--"), r" -- "),
]
# Clitics split off the end of a word: don't -> do n't, I'm -> I 'm, dogs' -> dogs '.
_CLITIC_RE = re.compile(r"^(.*[^' ])('[sS]|'[mM]|'[dD]|'ll|'LL|'re|'RE|'ve|'VE|n't|N'T|')$")
# Fused forms the Treebank splits into two words.
_FUSED_RE = [
    re.compile(r"(?i)^(can)(not)$"),
    re.compile(r"(?i)^(gim)(me)$"),
    re.compile(r"(?i)^(gon)(na)$"),
    re.compile(r"(?i)^(got)(ta)$"),
    re.compile(r"(?i)^(lem)(me)$"),
    re.compile(r"(?i)^(wan)(na)$"),
    re.compile(r"(?i)^(d)('ye)$"),
    re.compile(r"(?i)^(more)('n)$"),
    re.compile(r"(?i)^('t)(is|was)$"),
]


def treebank_tokens(text: str) -> list[str]:
    """Split `text` into Penn-Treebank-style tokens (an offline `nltk.word_tokenize`).

    Sentence-final periods are not split off: a period never changes whether a token is
    all capitals, which is what these tokens are used for.
    """
    for pattern, repl in _TB_RULES:
        text = pattern.sub(repl, text)
    tokens: list[str] = []
    for raw in text.split():
        m = _CLITIC_RE.match(raw)
        parts = [m.group(1), m.group(2)] if m else [raw]
        for part in parts:
            for fused in _FUSED_RE:
                f = fused.match(part)
                if f:
                    tokens.extend([f.group(1), f.group(2)])
                    break
            else:
                tokens.append(part)
    return tokens


def count_capital_words(text: str) -> int:
    """Number of tokens whose cased characters are all capitals (`str.isupper`)."""
    return sum(1 for tok in treebank_tokens(text) if tok.isupper())
