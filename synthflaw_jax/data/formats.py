"""Record shapes -> token ids + target mask.

A record becomes a list of text segments, each flagged as target (learned or forgotten) or
not; segments are tokenized separately and concatenated, so the target tokens decode to
exactly the target text whatever the tokenizer merges across a boundary.

Shapes (`format` in the config, or "auto" to pick per record from its keys):
  qa      {"question", "answer"} (TOFU's shape): prompt/target from `qa_prompt`/`qa_target`
  pr      {"prompt", "response"}: prompt/target from `pr_prompt`/`pr_target`
  chat    {"messages": [{"role", "content"}, ...]}: the tokenizer's chat template (or the
          configured/default one); every assistant turn is a target
  text    {"text"}: everything is a target
Templates are `str.format` strings over the record's fields. With `loss_mask="all"` every
token is a target; the first token of an example never is (nothing predicts it).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from synthflaw_jax.data import tokenizer as tok_lib
from synthflaw_jax.errors import SynthflawError

FORMATS = ("auto", "qa", "pr", "chat", "text")
LOSS_MASKS = ("targets", "all")
REQUIRED_FIELDS = {"qa": ("question", "answer"), "pr": ("prompt", "response"), "chat": ("messages",), "text": ("text",)}
# Used for chat records when neither the config nor the tokenizer has a chat template.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """How records become segments; built from the config's `format` block."""

    format: str = "auto"
    qa_prompt: str = "Question: {question}\nAnswer:"
    qa_target: str = " {answer}"
    pr_prompt: str = "{prompt}\n"
    pr_target: str = "{response}"
    chat_template: str = ""  # "" = the tokenizer's own, else DEFAULT_CHAT_TEMPLATE
    loss_mask: str = "targets"
    add_bos: bool = True
    add_eos: bool = True

    def __post_init__(self):
        if self.format not in FORMATS:
            raise SynthflawError(f"config: format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.loss_mask not in LOSS_MASKS:
            raise SynthflawError(f"config: loss_mask {self.loss_mask!r} is not one of {', '.join(LOSS_MASKS)}")


@dataclasses.dataclass
class Example:
    """One tokenized example: ids and its 0/1 target mask (int32, same length)."""

    ids: np.ndarray
    mask: np.ndarray
    origin: str = ""

    def __len__(self) -> int:
        return len(self.ids)


def detect_format(record: dict) -> str | None:
    """The shape of a record from its keys, or None when it has none of the known shapes."""
    if "messages" in record:
        return "chat"
    if "question" in record and "answer" in record:
        return "qa"
    if "prompt" in record and "response" in record:
        return "pr"
    if "text" in record:
        return "text"
    return None


def validate(record, spec: FormatSpec) -> str | None:
    """Why `record` cannot be formatted under `spec` (one line), or None when it can."""
    if not isinstance(record, dict):
        return f"record is a JSON {type(record).__name__}, not an object"
    fmt = spec.format if spec.format != "auto" else detect_format(record)
    if fmt is None:
        keys = ", ".join(sorted(k for k in record if not k.startswith("_"))) or "none"
        return f"record has none of the fields question+answer, prompt+response, messages, text (has: {keys})"
    for field in REQUIRED_FIELDS[fmt]:
        if field not in record:
            return f"record has no field {field!r} (format {fmt})"
    if fmt == "chat":
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            return "field 'messages' is not a non-empty list"
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                return f"messages[{i}] is not an object with string 'role' and 'content'"
    else:
        for field in REQUIRED_FIELDS[fmt]:
            if not isinstance(record[field], str):
                return f"field {field!r} is a {type(record[field]).__name__}, not a string"
    return None


def _fill(template: str, record: dict, what: str) -> str:
    try:
        return template.format(**record)
    except KeyError as err:
        raise SynthflawError(f"{what} template {template!r} names field {err} that the record does not have")
    except (IndexError, ValueError) as err:
        raise SynthflawError(f"{what} template {template!r} is not a valid format string: {err}")


def _chat_renderer(tokenizer, spec: FormatSpec) -> Callable[[list, bool], str]:
    template = spec.chat_template or getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE

    def render(messages: list, add_generation_prompt: bool) -> str:
        try:
            return tokenizer.apply_chat_template(
                messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as err:  # jinja2 errors, raise_exception() in templates
            raise SynthflawError(f"chat template failed: {type(err).__name__}: {err}")

    return render


def chat_segments(messages: list, render: Callable[[list, bool], str]) -> list[tuple[str, bool]]:
    """Split the rendered conversation into (text, is_target) pieces: assistant turns are targets.

    An assistant turn's text is what the template adds between the conversation so far with a
    generation prompt and the conversation including that turn (its content and end marker).
    """
    full = render(messages, False)
    segments: list[tuple[str, bool]] = []
    pos = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        try:
            before = render(messages[:i], True)
        except SynthflawError:
            if i:
                raise
            before = ""  # templates that refuse an empty conversation
        start, upto = len(before), render(messages[: i + 1], False)
        if not (full.startswith(upto) and upto.startswith(before) and start >= pos):
            raise SynthflawError(
                f"chat template is not prefix-stable at message {i}: cannot tell which text is the assistant turn"
            )
        segments.append((full[pos:start], False))
        segments.append((full[start: len(upto)], True))
        pos = len(upto)
    segments.append((full[pos:], False))
    return [(text, target) for text, target in segments if text]


class Formatter:
    """Turns validated records into `Example`s with one tokenizer and one `FormatSpec`."""

    def __init__(self, tokenizer, spec: FormatSpec):
        self.tokenizer = tokenizer
        self.spec = spec
        self._render = _chat_renderer(tokenizer, spec)
        self._bos = tok_lib.special_id(tokenizer, "bos") if spec.add_bos else None
        self._eos = tok_lib.special_id(tokenizer, "eos") if spec.add_eos else None
        self._bos_text = getattr(tokenizer, "bos_token", None)

    def segments(self, record: dict) -> tuple[list[tuple[str, bool]], bool, bool]:
        """(segments, add_bos, add_eos) for one record; raises SynthflawError when it is malformed."""
        problem = validate(record, self.spec)
        if problem:
            raise SynthflawError(problem)
        spec = self.spec
        fmt = spec.format if spec.format != "auto" else detect_format(record)
        if fmt == "qa":
            segs = [(_fill(spec.qa_prompt, record, "qa_prompt"), False), (_fill(spec.qa_target, record, "qa_target"), True)]
        elif fmt == "pr":
            segs = [(_fill(spec.pr_prompt, record, "pr_prompt"), False), (_fill(spec.pr_target, record, "pr_target"), True)]
        elif fmt == "text":
            segs = [(record["text"], True)]
        else:
            segs = chat_segments(record["messages"], self._render)
            # A template that writes its own BOS (most do) must not get a second one.
            starts_with_bos = bool(self._bos_text) and bool(segs) and segs[0][0].startswith(self._bos_text)
            return segs, not starts_with_bos, False
        return segs, True, True

    def __call__(self, records: Sequence[dict]) -> list[Example]:
        """Tokenize many records in one tokenizer call."""
        parts = [self.segments(r) for r in records]
        flat = [text for segs, _, _ in parts for text, _ in segs]
        ids_flat = iter(tok_lib.encode_many(self.tokenizer, flat))
        out = []
        for record, (segs, bos_ok, eos_ok) in zip(records, parts):
            ids: list[int] = []
            mask: list[int] = []
            if bos_ok and self._bos is not None:
                ids.append(self._bos)
                mask.append(0)
            for _, target in segs:
                piece = next(ids_flat)
                ids.extend(piece)
                mask.extend([int(target)] * len(piece))
            if eos_ok and self._eos is not None:
                ids.append(self._eos)
                mask.append(int(segs[-1][1]) if segs else 0)  # EOS ends the target: learn to stop
            ids_arr = np.asarray(ids, dtype=np.int32)
            mask_arr = np.ones_like(ids_arr) if self.spec.loss_mask == "all" else np.asarray(mask, dtype=np.int32)
            if len(mask_arr):
                mask_arr[0] = 0
            out.append(Example(ids_arr, mask_arr, str(record.get("_origin", ""))))
        return out
