"""Pattern metrics on tiny hand-made corpora, checked against hand-computed values."""
import math
import zlib

import numpy as np
import pytest
from scipy.stats import entropy

from synthflaw_jax.analysis import patterns as P
from tests.test_analysis_fakes import make_tokenizer


def test_word_tokens_split_punctuation_keep_inner_apostrophes_and_lowercase():
    assert P.word_tokens("Hello, World! The author's 2nd book.") == [
        "hello", ",", "world", "!", "the", "author's", "2nd", "book", "."]


def test_distinct_n_by_hand_and_never_across_documents():
    docs = [["a", "b", "a", "b"], ["a", "b", "c"]]
    # unigrams: 7 in all, {a, b, c}; bigrams: ab ba ab | ab bc -> 5, {ab, ba, bc};
    # trigrams: aba bab | abc -> 3, all distinct; 4-grams: abab -> 1
    assert P.distinct_n(docs, 1) == pytest.approx(3 / 7)
    assert P.distinct_n(docs, 2) == pytest.approx(3 / 5)
    assert P.distinct_n(docs, 3) == pytest.approx(1.0)
    assert P.distinct_n(docs, 4) == pytest.approx(1.0)
    assert P.distinct_n(docs, 5) is None


def test_distinct_n_matches_a_plain_python_count_on_random_text():
    rng = np.random.default_rng(0)
    docs = [list(rng.choice(list("abcde"), size=rng.integers(0, 12))) for _ in range(30)]
    for n in range(1, 5):
        grams = [tuple(d[i:i + n]) for d in docs for i in range(len(d) - n + 1)]
        assert P.distinct_n(docs, n) == pytest.approx(len(set(grams)) / len(grams))


def test_distinct_n_with_model_tokens():
    tok = make_tokenizer()
    lists = P.tokenize(["the author the author", "the writer"], tok)
    assert lists == [[2, 3, 2, 3], [2, 8]]
    assert P.distinct_n(lists, 2) == pytest.approx(3 / 4)  # (2,3) (3,2) (2,3) | (2,8)


def test_type_token_ratios():
    docs = [["a", "a", "b"], ["b", "c"]]
    assert P.type_token_ratio(docs) == pytest.approx(3 / 5)
    assert P.mean_document_ttr(docs) == pytest.approx((2 / 3 + 1) / 2)
    assert P.type_token_ratio([[]]) is None


def test_opening_and_closing_templates_with_shares():
    docs = ["The answer is yes.", "The answer is no.", "the answer is maybe", "It is fine.", "Short"]
    lists = P.tokenize(docs)
    top = P.templates(lists, 3, "start")
    assert top[0] == {"tokens": ("the", "answer", "is"), "count": 3, "share": 3 / 5}
    assert top[1] == {"tokens": ("it", "is", "fine"), "count": 1, "share": 1 / 5}
    assert len(top) == 2  # "Short" has fewer than 3 tokens: no template, still in the denominator
    end = P.templates(lists, 2, "end")
    assert sorted((e["tokens"], e["count"]) for e in end) == [
        (("fine", "."), 1), (("is", "maybe"), 1), (("no", "."), 1), (("yes", "."), 1)]
    assert P.templates(lists, 1, "end", top=1)[0] == {"tokens": (".",), "count": 3, "share": 3 / 5}


def test_compression_ratio_is_zlib9_over_newline_joined_bytes():
    texts = ["ab" * 100, "caf\u00e9"]
    raw = ("ab" * 100 + "\ncaf\u00e9").encode("utf-8")
    assert P.compression_ratio(texts) == pytest.approx(len(zlib.compress(raw, 9)) / len(raw))
    assert P.compression_ratio(["abcdefgh"], max_bytes=5) == pytest.approx(len(zlib.compress(b"abcde", 9)) / 5)
    rng = np.random.default_rng(0)
    noise = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz "), size=200)) for _ in range(20)]
    repeated = ["the author in question is a writer"] * 20
    assert P.compression_ratio(repeated) < P.compression_ratio(noise)


def test_position_entropy_by_hand_and_against_scipy():
    lists = [["a", "x"], ["a", "y"], ["b", "z"], ["b"]]
    out = P.position_entropy(lists, 3)
    assert out[0] == {"position": 0, "entropy_bits": pytest.approx(1.0), "documents": 4}
    assert out[1]["entropy_bits"] == pytest.approx(math.log2(3))
    assert out[1]["documents"] == 3
    assert out[2] == {"position": 2, "entropy_bits": None, "documents": 0}
    skewed = [["a"]] * 6 + [["b"]] * 3 + [["c"]]
    assert P.position_entropy(skewed, 1)[0]["entropy_bits"] == pytest.approx(entropy([6, 3, 1], base=2))


def test_truncate_to_budget_takes_whole_documents_then_cuts_the_last():
    lists = [["a"] * 5, ["b"] * 5, ["c"] * 5]
    cut = P.truncate_to_budget(lists, 12, seed=0)
    assert sum(map(len, cut)) == 12
    assert [len(t) for t in cut] == [5, 5, 2]
    assert sum(map(len, P.truncate_to_budget(lists, 100, seed=0))) == 15


def test_starts_with_template_ignores_case_and_spacing():
    assert P.starts_with_template("The  Author, in question is", "the author ,")
    assert not P.starts_with_template("Theauthor, in", "the author")
    assert not P.starts_with_template("anything", "")


def test_pattern_metrics_matched_views(tmp_path):
    docs = ["What is it?\nThe answer is yes.", "What is that?\nThe answer is no."]
    answers = ["The answer is yes.", "The answer is no."]
    out = P.pattern_metrics(docs, P.tokenize(docs), P.tokenize(answers), template_k=3,
                            matched={"tokens": 5, "bytes": 10, "documents": 1})
    # a tie, broken by the template itself
    assert out["templates"]["document_opening"] == [{"template": "what is it", "count": 1, "share": 0.5},
                                                    {"template": "what is that", "count": 1, "share": 0.5}]
    assert out["templates"]["answer_opening"][0] == {"template": "the answer is", "count": 2, "share": 1.0}
    assert out["tokens"] == 18
    assert out["position_entropy_matched"][0]["documents"] == 1
    assert P.plot_position_entropy(out["position_entropy"], out["position_entropy_matched"],
                                   tmp_path / "e.png") == str(tmp_path / "e.png")
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
