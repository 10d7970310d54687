"""Streams and mixture: ratios, seed determinism, epoch reshuffles, exact resume, per-host shares, layout."""
import collections
import json

import jax
import numpy as np
import pytest

from synthflaw_jax.data import config as config_lib
from synthflaw_jax.data import pipeline
from synthflaw_jax.data.layout import batch_sharding, to_global
from synthflaw_jax.data.tokenizer import tiny_tokenizer
from synthflaw_jax.errors import SynthflawError


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture()
def corpus(tmp_path):
    """A Q-A file and a text file whose records are told apart by a unique word."""
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": f"Who is q{i}?", "answer": f"It is a{i}."}) + "\n" for i in range(37)))
    text = tmp_path / "text.jsonl"
    text.write_text("".join(json.dumps({"text": f"document d{i} " + "word " * (i % 9)}) + "\n" for i in range(29)))
    return qa, text


def make_config(qa, text, **overrides):
    c = config_lib.default_data_config()
    c.streams.forget.source, c.streams.forget.source_type = str(qa), "jsonl"
    c.streams.replay.source, c.streams.replay.source_type = str(text), "jsonl"
    c.seq_len = 48
    c.batch_size = 4
    c.lookahead = 7  # smaller than a batch's worth, so refills happen mid-batch
    for k, v in overrides.items():
        setattr(c, k, v)
    return c


def segments(tok, batch):
    """Decoded text of every example in a batch, row-major."""
    out = []
    for r in range(batch["input_ids"].shape[0]):
        seg = batch["segment_ids"][r]
        for s in range(1, int(seg.max()) + 1):
            out.append(tok.decode(batch["input_ids"][r][seg == s]))
    return out


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert a.keys() == b.keys()
        for stream in a:
            for key in a[stream]:
                np.testing.assert_array_equal(a[stream][key], b[stream][key], err_msg=f"{stream}/{key}")


def test_batch_contract(tok, corpus):
    it = pipeline.build_mixture(make_config(*corpus), tokenizer=tok, process_index=0, process_count=1)
    batch = next(it)
    assert set(batch) == {"forget", "replay"}
    for stream in batch.values():
        assert set(stream) == {"input_ids", "loss_mask", "segment_ids", "positions"}
        for v in stream.values():
            assert v.dtype == np.int32 and v.shape == (2, 48)
        assert np.all(stream["loss_mask"][stream["segment_ids"] == 0] == 0)
        starts = np.diff(stream["segment_ids"], axis=1, prepend=0) != 0
        assert np.all(stream["loss_mask"][starts] == 0)  # first token of an example: never a target
        assert np.all(stream["positions"][starts & (stream["segment_ids"] > 0)] == 0)
    forget_texts = segments(tok, batch["forget"])
    assert all(t.startswith("<|bos|>Question: Who is q") and t.endswith("<|eos|>") for t in forget_texts)
    f = batch["forget"]
    targets = tok.decode(f["input_ids"][0][f["loss_mask"][0] == 1])
    assert targets.startswith(" It is a") and "Question" not in targets


def test_mixture_rows_follow_the_ratio(tok, corpus):
    c = make_config(*corpus, batch_size=12, mixture="forget=1,replay=2")
    assert config_lib.stream_batch_sizes(c) == {"forget": 4, "replay": 8}
    c.batch_size = 10  # 3.33 / 6.67: the larger remainder gets the spare row
    assert config_lib.stream_batch_sizes(c) == {"forget": 3, "replay": 7}
    c.mixture = "1:3"
    assert config_lib.stream_batch_sizes(c) == {"forget": 3, "replay": 7}  # 2.5 / 7.5: a tie goes to forget
    c.batch_size = 12
    it = pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1)
    rows = collections.Counter()
    tokens = collections.Counter()
    for batch in take(it, 30):
        for name, b in batch.items():
            rows[name] += b["input_ids"].shape[0]
            tokens[name] += int((b["segment_ids"] > 0).sum())
    assert rows["replay"] / rows["forget"] == pytest.approx(3.0)
    assert tokens["replay"] / tokens["forget"] == pytest.approx(3.0, rel=0.25)  # rows are mostly full


def test_mixture_errors(corpus):
    c = make_config(*corpus)
    for bad in ("forget=a", "1:x", "forget=1;replay=1", "", "-1:1", "forget=1,forget=2", "1:1:1:1"):
        c.mixture = bad
        with pytest.raises(SynthflawError, match="does not parse"):
            config_lib.stream_batch_sizes(c)
    c.mixture = "forget=1,retain=1"
    with pytest.raises(SynthflawError, match="'retain', which has no source"):
        config_lib.stream_batch_sizes(c)
    c.mixture = "forget=1,replay=100"
    with pytest.raises(SynthflawError, match="gives stream 'forget' no rows"):
        config_lib.stream_batch_sizes(c)
    c.mixture = "forget=1,bogus=1"
    with pytest.raises(SynthflawError, match="names stream 'bogus'"):
        config_lib.stream_batch_sizes(c)


def test_same_seed_same_batches_other_seed_other_order(tok, corpus):
    c = make_config(*corpus)
    a = take(pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1), 6)
    b = take(pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1), 6)
    assert_same(a, b)
    c.seed = 1
    other = take(pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1), 6)
    assert segments(tok, other[0]["forget"]) != segments(tok, a[0]["forget"])


def test_each_epoch_is_a_new_permutation(tok, corpus):
    qa, _ = corpus
    c = make_config(qa, "", mixture="forget=1", packing=False, num_epochs=3)
    stream = pipeline.build_stream(c, "forget", rows=5, tokenizer=tok, process_index=0, process_count=1)
    texts = [t for batch in stream for t in segments(tok, batch)]
    assert len(texts) == 3 * 37
    epochs = [texts[i * 37:(i + 1) * 37] for i in range(3)]
    source_order = [f"<|bos|>Question: Who is q{i}?\nAnswer: It is a{i}.<|eos|>" for i in range(37)]
    for e in epochs:
        assert sorted(e) == sorted(source_order)  # every record exactly once per epoch
    assert epochs[0] != source_order and epochs[0] != epochs[1] != epochs[2]
    assert stream.stats()["examples"] == 111 and stream.epoch == 3
    with pytest.raises(StopIteration):
        next(stream)


def test_exact_resume(tok, corpus):
    c = make_config(*corpus)
    n, m = 5, 9  # 9 more batches cross the small sources' epoch boundaries
    uninterrupted = take(pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1), n + m)
    first = pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1)
    take(first, n)
    state = first.get_state()
    state = json.loads(json.dumps(state))  # survives a round trip through a checkpoint file
    state = jax.tree.map(np.int64, state)  # or come back as numpy scalars, as Orbax restores them
    after = take(first, m)
    fresh = pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1)
    fresh.set_state(state)
    resumed = take(fresh, m)
    assert_same(after, resumed)
    assert_same(uninterrupted[n:], resumed)
    assert fresh.get_state() == first.get_state()
    assert first.get_state()["replay"]["epoch"] >= 1
    assert set(state["forget"]) >= {"position", "epoch", "seed"}


def test_restoring_a_mismatched_state_is_an_error(tok, corpus):
    c = make_config(*corpus)
    it = pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1)
    state = it.get_state()
    c.seed = 5
    other = pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1)
    with pytest.raises(SynthflawError, match="saved with seed="):
        other.set_state(state)
    with pytest.raises(SynthflawError, match="data state has streams"):
        it.set_state({"forget": state["forget"]})


@pytest.mark.parametrize("shuffle", [True, False])
def test_two_hosts_read_disjoint_complete_shares(tok, corpus, shuffle):
    qa, _ = corpus  # 37 records: the hosts' shares differ in size by one
    c = make_config(qa, "", mixture="forget=1", num_epochs=1, shuffle=shuffle)
    shares = []
    for host in (0, 1):
        stream = pipeline.build_stream(c, "forget", rows=2, tokenizer=tok, process_index=host, process_count=2)
        shares.append([t for batch in stream for t in segments(tok, batch)])
    assert len(shares[0]) + len(shares[1]) == 37
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(
        f"<|bos|>Question: Who is q{i}?\nAnswer: It is a{i}.<|eos|>" for i in range(37)
    )
    assert abs(len(shares[0]) - len(shares[1])) == 1


def test_global_batch_rows_are_split_over_hosts(tok, corpus):
    c = make_config(*corpus, batch_size=8, mixture="1:1")
    assert pipeline.local_batch_sizes(c, 2) == {"forget": 2, "replay": 2}
    it = pipeline.build_mixture(c, tokenizer=tok, process_index=1, process_count=2)
    assert next(it)["forget"]["input_ids"].shape == (2, 48)
    c.batch_size = 6
    with pytest.raises(SynthflawError, match="not divisible by 4 hosts"):
        pipeline.local_batch_sizes(c, 4)


def test_truncation_counts_in_a_stream(tok, corpus):
    qa, _ = corpus
    c = make_config(qa, "", mixture="forget=1", num_epochs=1, shuffle=False, seq_len=20, truncation="truncate")
    lengths = [len(tok(f"Question: Who is q{i}?\nAnswer:", add_special_tokens=False)["input_ids"])
               + len(tok(f" It is a{i}.", add_special_tokens=False)["input_ids"]) + 2 for i in range(37)]
    too_long = sum(n > 20 for n in lengths)
    assert 0 < too_long < 37
    stream = pipeline.build_stream(c, "forget", rows=4, tokenizer=tok, process_index=0, process_count=1)
    for _ in stream:
        pass
    stats = stream.stats()
    assert stats["truncated"] + stats["dropped_no_target"] == too_long
    assert stats["examples"] == 37 - stats["dropped_no_target"]
    c.truncation = "drop"
    stream = pipeline.build_stream(c, "forget", rows=4, tokenizer=tok, process_index=0, process_count=1)
    texts = [t for batch in stream for t in segments(tok, batch)]
    assert stream.stats()["dropped_too_long"] == too_long and len(texts) == 37 - too_long
    c.truncation = "error"
    stream = pipeline.build_stream(c, "forget", rows=4, tokenizer=tok, process_index=0, process_count=1)
    with pytest.raises(SynthflawError, match=r"qa\.jsonl:\d+: example has 21 tokens, more than seq_len 20"):
        list(stream)
    # at 13 tokens no answer survives truncation: every example is dropped, and counted
    c.truncation, c.seq_len = "truncate", 13
    stream = pipeline.build_stream(c, "forget", rows=4, tokenizer=tok, process_index=0, process_count=1)
    assert list(stream) == [] and stream.stats()["dropped_no_target"] == 37
    c.num_epochs = 0  # repeating forever would spin: an error instead
    stream = pipeline.build_stream(c, "forget", rows=4, tokenizer=tok, process_index=0, process_count=1)
    with pytest.raises(SynthflawError, match="every example is left out"):
        next(stream)


def test_vocab_bigger_than_the_model_is_refused(tok, corpus):
    with pytest.raises(SynthflawError, match="larger than the model's vocab_size 1024"):
        pipeline.build_mixture(make_config(*corpus), tokenizer=tok, model_vocab_size=1024, process_index=0,
                               process_count=1)


def test_default_config_runs_on_the_sample_corpora(tok):
    c = config_lib.default_data_config()
    it = pipeline.build_mixture(c, tokenizer=tok, model_vocab_size=2048, process_index=0, process_count=1)
    batch = next(it)
    assert batch["forget"]["input_ids"].shape == (4, 128) and batch["replay"]["input_ids"].shape == (4, 128)
    assert "The answer is" in segments(tok, batch["forget"])[0]


def test_layout_to_the_data_sharding(tok, corpus):
    mesh = jax.make_mesh((4, 2, 1), ("data", "fsdp", "tensor"))
    sharding = batch_sharding(mesh, ("data", "fsdp"))
    c = make_config(*corpus, batch_size=16)
    batch = next(pipeline.build_mixture(c, tokenizer=tok, process_index=0, process_count=1))
    glob = to_global(batch, sharding)
    for name in batch:
        for key, local in batch[name].items():
            arr = glob[name][key]
            assert arr.shape == (8, 48) and arr.sharding == sharding
            np.testing.assert_array_equal(np.asarray(arr), local)
            assert {s.data.shape for s in arr.addressable_shards} == {(1, 48)}
    with pytest.raises(SynthflawError, match=r"\['forget'\]\['input_ids'\]: 4 local rows"):
        to_global({"forget": {"input_ids": np.zeros((4, 8), np.int32)}}, sharding)


def test_tofu_forget_replay_retain_mixture(tok, shared_data):
    tofu = shared_data / "tofu"
    c = config_lib.default_data_config()
    c.streams.forget.source, c.streams.forget.source_type = str(tofu / "forget10.json"), "jsonl"
    c.streams.retain.source = str(tofu / "retain90.json")
    c.mixture, c.batch_size, c.seq_len = "forget=2,replay=1,retain=1", 8, 256
    it = pipeline.build_mixture(c, tokenizer=tok, model_vocab_size=2048, process_index=0, process_count=1)
    forget_q = {json.loads(line)["question"] for line in (tofu / "forget10.json").read_text().splitlines()}
    seen = 0
    for batch in take(it, 20):
        assert {k: v["input_ids"].shape[0] for k, v in batch.items()} == {"forget": 4, "replay": 2, "retain": 2}
        for text in segments(tok, batch["forget"]):
            question = text.split("Question: ", 1)[1].split("\nAnswer:", 1)[0]
            assert question in forget_q
            seen += 1
    assert seen >= 80
    assert all(s["bad_records"] == 0 for s in it.stats().values())


def test_split_across_rows_fills_rows_and_keeps_every_token_in_order(tok, corpus):
    _, text = corpus
    c = make_config("", text, mixture="replay=1", num_epochs=1, shuffle=False, seq_len=16)
    c.streams.replay.split_across_rows = True
    stream = pipeline.build_stream(c, "replay", rows=3, tokenizer=tok, process_index=0, process_count=1)
    batches = list(stream)
    c.seq_len = 64  # long enough for every document whole
    whole = pipeline.build_stream(c, "replay", rows=1, tokenizer=tok, process_index=0, process_count=1)
    expected = np.concatenate([b["input_ids"][b["segment_ids"] > 0] for b in whole])
    got = np.concatenate([b["input_ids"][b["segment_ids"] > 0] for b in batches])
    assert got.tolist() == expected.tolist()  # nothing truncated, dropped or repeated
    assert all((b["segment_ids"] > 0).all() for b in batches[:-1])  # no padding but at the very end
    assert stream.stats()["examples"] == 29 and stream.stats()["truncated"] == 0
    first_tokens = np.concatenate([b["positions"] == 0 for b in batches])
    assert not np.concatenate([b["loss_mask"] for b in batches])[first_tokens].any()


def test_split_across_rows_resumes_exactly_inside_an_example(tok, corpus):
    _, text = corpus
    c = make_config("", text, mixture="replay=1", seq_len=16)
    c.streams.replay.split_across_rows = True
    build = lambda: pipeline.build_stream(c, "replay", rows=2, tokenizer=tok, process_index=0, process_count=1)
    uninterrupted = take(build(), 12)
    first = build()
    take(first, 5)
    state = jax.tree.map(np.int64, json.loads(json.dumps(first.get_state())))
    assert state["offset"] > 0  # this cut falls inside a document (checked, so the test means something)
    fresh = build()
    fresh.set_state(state)
    assert_same([{"replay": b} for b in uninterrupted[5:]], [{"replay": b} for b in take(fresh, 7)])
    old = {k: v for k, v in state.items() if k != "offset"}  # a state saved before the field existed
    again = build()
    again.set_state(old)
    assert again.get_state()["offset"] == 0


def test_split_across_rows_is_refused_where_the_loss_needs_whole_examples(tok, corpus):
    qa, _ = corpus
    c = make_config(qa, "", mixture="forget=1")
    c.streams.forget.split_across_rows = True
    with pytest.raises(SynthflawError, match="split_across_rows"):
        pipeline.build_stream(c, "forget", rows=2, tokenizer=tok, process_index=0, process_count=1, max_segments=4)
