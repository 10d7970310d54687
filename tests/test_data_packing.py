"""Packing: segment ids, positions, first fit, no split examples, truncation policies, attention isolation."""
import jax.numpy as jnp
import numpy as np
import pytest

from synthflaw_jax.data import packing
from synthflaw_jax.data.formats import Example
from synthflaw_jax.errors import SynthflawError


def ex(n, start=10, target_from=1, origin=""):
    ids = np.arange(start, start + n, dtype=np.int32)
    mask = (np.arange(n) >= target_from).astype(np.int32)
    return Example(ids, mask, origin)


def test_first_fit_packing_by_hand():
    examples = [ex(5, 100), ex(3, 200), ex(4, 300), ex(6, 400)]
    batch, nxt, placed = packing.fill_batch(examples.__getitem__, 0, 4, rows=2, seq_len=8, packing=True, pad_id=0)
    assert (nxt, placed) == (3, 3)  # the 6-token example fits in neither row: it opens the next batch
    assert batch["input_ids"].tolist() == [
        [100, 101, 102, 103, 104, 200, 201, 202],
        [300, 301, 302, 303, 0, 0, 0, 0],
    ]
    assert batch["segment_ids"].tolist() == [[1, 1, 1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 0, 0, 0, 0]]
    assert batch["positions"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 0, 0, 0]]
    assert batch["loss_mask"].tolist() == [[0, 1, 1, 1, 1, 0, 1, 1], [0, 1, 1, 1, 0, 0, 0, 0]]
    assert all(v.dtype == np.int32 and v.shape == (2, 8) for v in batch.values())
    batch, nxt, placed = packing.fill_batch(examples.__getitem__, 3, 4, rows=2, seq_len=8, packing=True)
    assert (nxt, placed) == (4, 1)
    assert batch["segment_ids"].tolist() == [[1] * 6 + [0, 0], [0] * 8]


def test_first_fit_uses_an_earlier_row_with_room():
    examples = [ex(6), ex(5), ex(2)]  # the 2 goes back into row 0 (6 + 2 = 8)
    batch, nxt, _ = packing.fill_batch(examples.__getitem__, 0, 3, rows=2, seq_len=8, packing=True)
    assert nxt == 3
    assert batch["segment_ids"].tolist() == [[1] * 6 + [2, 2], [1] * 5 + [0] * 3]


def test_padding_mode_one_example_per_row():
    examples = [ex(2), ex(3), ex(1)]
    batch, nxt, placed = packing.fill_batch(examples.__getitem__, 0, 3, rows=2, seq_len=4, packing=False, pad_id=7)
    assert (nxt, placed) == (2, 2)
    assert batch["segment_ids"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    assert batch["input_ids"][0, 2:].tolist() == [7, 7]


def test_first_token_of_every_example_is_never_a_target():
    examples = [ex(3, target_from=0), ex(3, target_from=0)]
    (batch,) = packing.pack_examples(examples, rows=1, seq_len=6)
    assert batch["loss_mask"].tolist() == [[0, 1, 1, 0, 1, 1]]


def test_no_example_is_ever_split():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 17, size=200)
    examples = [ex(int(n), start=1000 * i) for i, n in enumerate(lengths)]
    seen = []
    for batch in packing.pack_examples(examples, rows=3, seq_len=16):
        for r in range(3):
            seg = batch["segment_ids"][r]
            for s in range(1, seg.max() + 1):
                where = np.flatnonzero(seg == s)
                assert np.all(np.diff(where) == 1)  # contiguous
                ids = batch["input_ids"][r, where]
                assert batch["positions"][r, where].tolist() == list(range(len(where)))
                seen.append(ids.tolist())
    assert sorted(seen) == sorted(e.ids.tolist() for e in examples)  # every one, once, whole


def test_truncation_policies():
    long = ex(10, origin="f.jsonl:7")
    cut, outcome = packing.apply_truncation(long, 8, "truncate")
    assert outcome == "truncated" and cut.ids.tolist() == list(range(10, 18))
    assert packing.apply_truncation(long, 8, "drop") == (None, "dropped_too_long")
    with pytest.raises(SynthflawError, match="f.jsonl:7: example has 10 tokens, more than seq_len 8"):
        packing.apply_truncation(long, 8, "error")
    short = ex(8)
    assert packing.apply_truncation(short, 8, "error") == (short, "ok")
    prompt_heavy = ex(10, target_from=9)  # only the last token is a target
    assert packing.apply_truncation(prompt_heavy, 8, "truncate") == (None, "dropped_no_target")
    with pytest.raises(SynthflawError, match="truncation 'chop'"):
        packing.apply_truncation(long, 8, "chop")


def test_packed_rows_never_attend_across_examples():
    """Through the model's own attention mask, built the way the model builds it."""
    from synthflaw_jax.models.attention import AttentionMask

    lengths = [5, 3, 4, 2, 7]
    examples = [ex(n, start=100 * i) for i, n in enumerate(lengths)]
    batch = packing.pack_examples(examples, rows=2, seq_len=10)[0]
    # first fit by hand: row 0 = ex0 [0,5), ex1 [5,8), ex3 [8,10); row 1 = ex2 [0,4); ex4 (7) fits
    # in neither row and opens the next batch
    seg = jnp.asarray(batch["segment_ids"])
    index = jnp.arange(10, dtype=jnp.int32)
    dense = np.asarray(AttentionMask(seg, seg, index, index).dense())[:, 0]
    spans = {0: [(0, 5), (5, 8), (8, 10)], 1: [(0, 4)]}
    for r, row_spans in spans.items():
        expected = np.zeros((10, 10), bool)
        for a, b in row_spans:
            for q in range(a, b):
                expected[q, a: q + 1] = True
        valid_q = np.zeros(10, bool)
        for a, b in row_spans:
            valid_q[a:b] = True
        assert np.array_equal(dense[r][valid_q], expected[valid_q])
    assert batch["segment_ids"][0].tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 3, 3]
    assert batch["segment_ids"][1].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_fill_rows_splits_examples_at_row_ends_by_hand():
    examples = [ex(5, 100), ex(6, 200), ex(3, 300), ex(4, 400)]
    batch, nxt, offset, finished = packing.fill_rows(examples.__getitem__, 0, 0, 4, rows=2, seq_len=8, pad_id=0)
    # row 0: example 0, then the first 3 tokens of example 1; row 1: its other 3, example 2, and the
    # first 2 tokens of example 3, where the batch is full: the next batch starts at token 2 of example 3
    assert (nxt, offset, finished) == (3, 2, 3)
    assert batch["input_ids"].tolist() == [
        [100, 101, 102, 103, 104, 200, 201, 202],
        [203, 204, 205, 300, 301, 302, 400, 401],
    ]
    assert batch["segment_ids"].tolist() == [[1, 1, 1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2, 3, 3]]
    assert batch["positions"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 0, 1, 2, 0, 1]]
    # a piece's first token has nothing before it in its row, so it is never a target
    assert batch["loss_mask"].tolist() == [[0, 1, 1, 1, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1, 0, 1]]
    batch, nxt, offset, finished = packing.fill_rows(examples.__getitem__, 3, 2, 4, rows=2, seq_len=8)
    assert batch["input_ids"].tolist() == [[402, 403, 0, 0, 0, 0, 0, 0], [0] * 8]  # the stream's end
    assert batch["loss_mask"][0].tolist() == [0, 1, 0, 0, 0, 0, 0, 0]
    assert (nxt, offset, finished) == (4, 0, 1)


def test_fill_rows_splits_an_example_longer_than_a_batch_and_skips_left_out_ones():
    examples = [None, ex(20, 100), ex(0), ex(2, 500)]
    get = examples.__getitem__
    batch, nxt, offset, finished = packing.fill_rows(get, 0, 0, 4, rows=2, seq_len=8)
    assert batch["input_ids"].ravel().tolist() == list(range(100, 116)) and (nxt, offset, finished) == (1, 16, 0)
    batch, nxt, offset, finished = packing.fill_rows(get, nxt, offset, 4, rows=2, seq_len=8)
    assert batch["input_ids"][0].tolist() == [116, 117, 118, 119, 500, 501, 0, 0]
    assert batch["segment_ids"][0].tolist() == [1, 1, 1, 1, 2, 2, 0, 0] and (nxt, offset, finished) == (4, 0, 2)
