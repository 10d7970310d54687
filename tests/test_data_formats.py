"""Formats and loss masks: the masked tokens are exactly the answer / assistant turns, token by token."""
import numpy as np
import pytest

from synthflaw_jax.data import formats
from synthflaw_jax.data.tokenizer import tiny_tokenizer
from synthflaw_jax.errors import SynthflawError

BOS, EOS = 1, 2


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def enc(tok, text):
    """Reference tokenization through transformers' own call (not the pipeline's batch path)."""
    return tok(text, add_special_tokens=False)["input_ids"]


def runs(mask):
    """[(start, end)] of the maximal runs of 1s."""
    out, start = [], None
    for i, m in enumerate(list(mask) + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def one(tok, record, **spec):
    return formats.Formatter(tok, formats.FormatSpec(**spec))([record])[0]


def test_qa_mask_is_exactly_the_answer(tok):
    rec = {"question": "Who wrote Hamlet?", "answer": "William Shakespeare wrote it."}
    ex = one(tok, rec)
    prompt = enc(tok, "Question: Who wrote Hamlet?\nAnswer:")
    target = enc(tok, " William Shakespeare wrote it.")
    assert ex.ids.tolist() == [BOS] + prompt + target + [EOS]
    assert ex.mask.tolist() == [0] * (1 + len(prompt)) + [1] * (len(target) + 1)
    assert tok.decode(ex.ids[ex.mask == 1]) == " William Shakespeare wrote it.<|eos|>"
    assert ex.ids.dtype == np.int32 and ex.mask.dtype == np.int32


def test_tofu_record_with_custom_templates(tok):
    rec = {"question": "Where?", "answer": "Paris.", "extra": 3}
    ex = one(tok, rec, qa_prompt="[Q] {question} [A]", qa_target=" {answer}", add_eos=False)
    assert ex.ids.tolist() == [BOS] + enc(tok, "[Q] Where? [A]") + enc(tok, " Paris.")
    assert tok.decode(ex.ids[ex.mask == 1]) == " Paris."


def test_prompt_response(tok):
    ex = one(tok, {"prompt": "Say hi", "response": "hi there"})
    assert ex.ids.tolist() == [BOS] + enc(tok, "Say hi\n") + enc(tok, "hi there") + [EOS]
    assert tok.decode(ex.ids[ex.mask == 1], skip_special_tokens=True) == "hi there"


def test_text_is_all_target_but_the_first_token(tok):
    ex = one(tok, {"text": "Plain text is learned entirely."})
    assert ex.ids.tolist() == [BOS] + enc(tok, "Plain text is learned entirely.") + [EOS]
    assert ex.mask.tolist() == [0] + [1] * (len(ex.ids) - 1)
    ex = one(tok, {"text": "No BOS here."}, add_bos=False)
    assert ex.mask[0] == 0 and ex.mask[1:].all()  # nothing predicts the first token


def test_loss_mask_all(tok):
    ex = one(tok, {"question": "Q?", "answer": "A."}, loss_mask="all")
    assert ex.mask.tolist() == [0] + [1] * (len(ex.ids) - 1)


CONVO = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "It is 6."},
]


def test_chat_with_the_tokenizers_template(tok):
    ex = one(tok, {"messages": CONVO})
    full = tok.apply_chat_template(CONVO, tokenize=False)
    assert tok.decode(ex.ids) == full  # the template's own BOS, not a second one
    assert ex.ids.tolist().count(BOS) == 1
    spans = runs(ex.mask)
    assert [tok.decode(ex.ids[a:b]) for a, b in spans] == ["It is 4.<|end|>", "It is 6.<|end|>"]
    # the unmasked rest is everything else, and no user/system text is a target
    rest = "".join(tok.decode(ex.ids[a:b]) for a, b in runs(1 - ex.mask))
    assert rest == "<|bos|><|system|>Be brief.<|end|><|user|>What is 2+2?<|end|><|assistant|>" \
                   "<|user|>And 3+3?<|end|><|assistant|>"


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_chat_with_a_configured_template(tok):
    ex = one(tok, {"messages": CONVO[1:]}, chat_template=CHATML)
    assert ex.ids[0] == BOS  # this template has no BOS of its own
    spans = runs(ex.mask)
    assert [tok.decode(ex.ids[a:b]) for a, b in spans] == ["It is 4.<|im_end|>\n", "It is 6.<|im_end|>\n"]


def test_chat_template_that_rewrites_history_is_refused(tok):
    unstable = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(SynthflawError, match="not prefix-stable"):
        one(tok, {"messages": CONVO}, chat_template=unstable)


def test_auto_detection_and_validation():
    spec = formats.FormatSpec()
    assert formats.detect_format({"messages": []}) == "chat"
    assert formats.detect_format({"question": "q", "answer": "a", "text": "t"}) == "qa"
    assert formats.detect_format({"prompt": "p", "response": "r"}) == "pr"
    assert formats.detect_format({"text": "t"}) == "text"
    assert "none of the fields" in formats.validate({"title": "x"}, spec)
    assert "no field 'answer'" in formats.validate({"question": "x"}, formats.FormatSpec(format="qa"))
    assert "not a string" in formats.validate({"text": 3}, spec)
    assert "messages[1]" in formats.validate({"messages": [{"role": "user", "content": "a"}, {"role": "x"}]}, spec)
    assert formats.validate({"question": "q", "answer": "a"}, spec) is None


def test_template_naming_a_missing_field(tok):
    with pytest.raises(SynthflawError, match="names field 'context'"):
        one(tok, {"question": "q", "answer": "a"}, qa_prompt="{context} {question}")
    with pytest.raises(SynthflawError, match="format 'yaml'"):
        formats.FormatSpec(format="yaml")
