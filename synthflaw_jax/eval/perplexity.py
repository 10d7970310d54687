"""Perplexity: token-weighted negative log-likelihood over sliding windows, exponentiated.

A plain-text file (`.txt`, `.md` or no extension) is one document; a JSON Lines file
(`.jsonl`, or `.json` holding JSON lines) has one document per line in its `text` field;
any other extension is refused. Each document is tokenized with the tokenizer's special tokens (BOS), then cut into
windows of `max_length` tokens that start every `stride` tokens (the Hugging Face
perplexity recipe). Each token after the first of its document is scored exactly once, in
the first window that reaches it, with everything before it in that window as context.
ppl = exp(total NLL / scored tokens).
"""
from __future__ import annotations

import json
import logging
import math
import pathlib
from typing import Any, Sequence

from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.eval import loglik
from synthflaw_jax.jsonl import iter_objects

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md", "")  # the whole file is one document
JSONL_SUFFIXES = (".jsonl", ".json")  # one {"text": ...} object per line


def load_documents(path) -> list[str]:
    """Documents of a plain-text file (`.txt`/`.md`/no extension: the whole file) or a JSON
    Lines file (`.jsonl`/`.json`: `text` of each line); other extensions are refused. A bucket
    path (gs://) is downloaded first."""
    from synthflaw_jax import runtime

    path = pathlib.Path(runtime.local_input(path))
    if not path.is_file():
        raise SynthflawError(f"{path}: no such file")
    if path.suffix in JSONL_SUFFIXES:
        docs = []
        for n, obj in iter_objects(path):
            text = obj.get("text")
            if not isinstance(text, str):
                raise SynthflawError(f"{path}:{n}: field 'text' must be a string")
            if text.strip():
                docs.append(text)
    elif path.suffix in TEXT_SUFFIXES:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise SynthflawError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        docs = [text] if text.strip() else []
    else:
        raise SynthflawError(f"{path}: unknown format {path.suffix!r} (expected plain text: .txt, .md or no "
                             "extension; or JSON Lines with a 'text' field: .jsonl, .json)")
    if not docs:
        raise SynthflawError(f"{path}: no text to score")
    return docs


def windows(ids: Sequence[int], max_length: int, stride: int) -> list[loglik.Request]:
    """The scoring windows of one tokenized document (see the module docstring)."""
    if max_length < 2:
        raise SynthflawError(f"--max-length must be >= 2, got {max_length}")
    if not 1 <= stride <= max_length:
        raise SynthflawError(f"--stride must be in 1..max_length ({max_length}), got {stride}")
    ids = list(ids)
    out, scored_to = [], 1  # token 0 has no context
    begin = 0
    while scored_to < len(ids):
        # With stride == max_length a window would start on its first unscored token, which
        # then has no context: start one token earlier instead.
        begin = min(begin, scored_to - 1)
        end = min(begin + max_length, len(ids))
        weights = [0.0] * (scored_to - begin) + [1.0] * (end - scored_to)
        out.append(loglik.Request(ids[begin:end], weights))
        scored_to = end
        begin += stride
    return out


def evaluate(model: Any, documents: Sequence[str], *, max_length: int | None = None, stride: int | None = None,
             batch_size: int = 8, progress: bool | str = False) -> dict[str, Any]:
    """`{"ppl", "nll", "tokens", "documents", "windows", "max_length", "stride"}` of a model (a
    `LoadedModel`, a path or a loader) on documents; `progress` shows a bar of windows scored."""
    if batch_size < 1:
        raise SynthflawError(f"--batch-size must be >= 1, got {batch_size}")
    model = loglik.as_model(model)
    tok = loglik.require_tokenizer(model)
    max_length = int(max_length if max_length is not None else min(model.config.max_position_embeddings, 2048))
    if max_length > model.config.max_position_embeddings:
        log.warning("--max-length %d exceeds the model's max_position_embeddings %d",
                    max_length, model.config.max_position_embeddings)
    stride = int(stride if stride is not None else max(1, max_length // 2))
    requests = []
    for d, text in enumerate(documents):
        ids = list(tok(text)["input_ids"])
        loglik.check_ids(ids, model.config.vocab_size, f"document {d + 1}")
        requests += windows(ids, max_length, stride)
    scores = loglik.score_requests(model, requests, batch_size,
                                   progress="perplexity windows" if progress is True else progress)
    tokens = sum(s.tokens for s in scores)
    if tokens == 0:
        raise SynthflawError("the text has fewer than 2 tokens: nothing to score")
    nll = -sum(s.logprob for s in scores) / tokens
    return {"ppl": math.exp(nll), "nll": nll, "tokens": tokens, "documents": len(documents),
            "windows": len(requests), "max_length": max_length, "stride": stride}


def run(model: Any, data, out, *, max_length: int | None = None, stride: int | None = None,
        batch_size: int = 8, overwrite: bool = False, inputs=(), progress: bool = False) -> dict[str, Any]:
    """Evaluate and write `OUT/metrics.json`; returns the metrics. `inputs`: other paths read
    (the model), which `out` may not be or nest with."""
    from synthflaw_jax import outputs

    inputs = [*inputs, data]
    outputs.check(out, overwrite, inputs=inputs, what="--out")
    metrics = evaluate(model, load_documents(data), max_length=max_length, stride=stride, batch_size=batch_size,
                       progress=progress)
    metrics["data"] = str(data)
    with outputs.directory(out, overwrite, inputs=inputs, what="--out") as tmp:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
