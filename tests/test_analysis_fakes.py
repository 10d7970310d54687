"""A tiny numpy stand-in for `synthflaw_jax.load(...)`'s model, and a real word-level HF tokenizer.

Other analysis tests import `FakeModel` and `make_tokenizer` from here; the tests below
check that the fake honours the interface the analysis code relies on.
"""
import types

import numpy as np

WORDS = ("the author in question is a writer who was born and raised city of books about love war "
         "return value if none true false list string file name path object").split()


def make_tokenizer(words=WORDS):
    """A word-level PreTrainedTokenizerFast built offline: [PAD]=0, [UNK]=1, then `words`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


class FakeModel:
    """Causal toy model: hidden state at t = mean of token embeddings 0..t; logits = hidden @ W.

    `generate` returns `reply(prompt)` for each prompt. Every call's input shape is
    recorded in `shapes`.
    """

    def __init__(self, vocab_size=40, hidden_size=6, seed=0, tokenizer=None, reply=None):
        rng = np.random.default_rng(seed)
        self.config = types.SimpleNamespace(vocab_size=vocab_size, hidden_size=hidden_size)
        self.params = {"embed": rng.normal(size=(vocab_size, hidden_size)),
                       "unembed": rng.normal(size=(hidden_size, vocab_size))}
        self.tokenizer = tokenizer
        self.reply = reply or (lambda prompt: "the author in question")
        self.shapes = []

    def hidden_states(self, input_ids, attention_mask=None):
        ids = np.asarray(input_ids)
        self.shapes.append(ids.shape)
        emb = self.params["embed"][ids]
        steps = np.arange(1, ids.shape[1] + 1)[None, :, None]
        return (np.cumsum(emb, axis=1) / steps).astype(np.float32)

    def logits(self, input_ids, attention_mask=None):
        return (self.hidden_states(input_ids, attention_mask) @ self.params["unembed"]).astype(np.float32)

    def generate(self, prompts, max_new_tokens):
        return [self.reply(p) for p in prompts]


def test_fake_model_is_causal_so_right_padding_leaves_real_tokens_alone():
    model = FakeModel()
    short = np.array([[3, 4, 5]])
    padded = np.array([[3, 4, 5, 0, 0]])
    np.testing.assert_allclose(model.hidden_states(short)[0], model.hidden_states(padded)[0, :3], rtol=1e-6)
    assert model.logits(padded).shape == (1, 5, 40)


def test_tokenizer_maps_words_and_unknowns():
    tok = make_tokenizer()
    ids = tok(["the author zebra"], add_special_tokens=True)["input_ids"][0]
    assert ids == [2, 3, 1]
    assert len(tok) == 2 + len(set(WORDS))
