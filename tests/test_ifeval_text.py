"""The offline word/sentence/token splitters on hand-checked examples.

The sentence splits below follow Punkt's conventions, worked out by hand from its rules:
newlines are not boundaries, "1." before a capital is a sentence of its own, "e.g."
ends one. (Checked once, offline, against NLTK 3.8.1 with its English Punkt model and
against nltk.word_tokenize for the tokens: all equal.)
"""
import pytest

from synthflaw_jax.eval.ifeval import text


@pytest.mark.parametrize(
    "value,expected",
    [
        ("", 0),
        ("one two three", 3),
        ("It's a well-known fact.", 6),
        ("Le vélo a été inventé", 5),  # \w is Unicode-aware
        ("3.5 percent, 10:30", 5),
    ],
)
def test_count_words(value, expected):
    assert text.count_words(value) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("", []),
        ("   \n ", []),
        ("Hello world. How are you? I am fine!", ["Hello world.", "How are you?", "I am fine!"]),
        ("Mr. Smith met Dr. Jones at 5 p.m. yesterday.",
         ["Mr. Smith met Dr. Jones at 5 p.m. yesterday."]),
        ("The price rose 3.5 percent. Analysts were surprised.",
         ["The price rose 3.5 percent.", "Analysts were surprised."]),
        ("1. Apples are red.\n2. Bananas are yellow.",
         ["1.", "Apples are red.", "2.", "Bananas are yellow."]),
        ("* first item\n* second item\n* third item", ["* first item\n* second item\n* third item"]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("J. K. Rowling wrote it. It sold well.", ["J. K. Rowling wrote it.", "It sold well."]),
        ("Wait... and then it rained.", ["Wait... and then it rained."]),
        ("Fruits, e.g. apples, are sweet.", ["Fruits, e.g.", "apples, are sweet."]),
        ("I can't. He can.", ["I can't.", "He can."]),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ("See the list (below). Then decide.", ["See the list (below).", "Then decide."]),
        ("No final stop here", ["No final stop here"]),
    ],
)
def test_split_sentences(value, expected):
    assert text.split_sentences(value) == expected
    assert text.count_sentences(value) == len(expected)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("DON'T touch the HOT plate", ["DO", "N'T", "touch", "the", "HOT", "plate"]),
        ("I'm here", ["I", "'m", "here"]),
        ("AT&T and I'M HERE, OK?", ["AT", "&", "T", "and", "I", "'M", "HERE", ",", "OK", "?"]),
        ("CANNOT stop", ["CAN", "NOT", "stop"]),
        ("WELL-KNOWN (NASA) [ESA]", ["WELL-KNOWN", "(", "NASA", ")", "[", "ESA", "]"]),
        ("3,000 at 10:30", ["3,000", "at", "10:30"]),
    ],
)
def test_treebank_tokens(value, expected):
    assert text.treebank_tokens(value) == expected


def test_count_capital_words():
    # AT, T, I, 'M, HERE, OK are all capitals; "and", ",", "&", "?" are not.
    assert text.count_capital_words("AT&T and I'M HERE, OK?") == 6
    assert text.count_capital_words("**IMPORTANT** note") == 1
    assert text.count_capital_words("2024 was fine") == 0
