"""How easy each corpus is for a model: mean token loss now, and loss curves of a training run.

Metrics file (a run's JSONL, one object a line): every line that has a loss needs an
integer `"step"`; loss values are numeric fields named
    `loss`                                   -> stream "total"
    `loss/<s>`, `loss_<s>`, `nll/<s>`, `nll_<s>` -> stream <s>
    `<s>/loss`, `<s>_loss`, `<s>/nll`, `<s>_nll` -> stream <s>
e.g. `{"step": 10, "loss/forget": 2.1, "loss/replay": 3.0}`. Other fields are ignored,
and so are lines without any loss field. Blank lines are skipped.
"""
from __future__ import annotations

import math
import pathlib
import re
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from synthflaw_jax import jsonl
from synthflaw_jax.analysis import model_io, plots
from synthflaw_jax.analysis.shift import log_softmax
from synthflaw_jax.errors import SynthflawError

_STREAM_RES = (
    re.compile(r"^(?:loss|nll)[/_](?P<stream>.+)$"),
    re.compile(r"^(?P<stream>.+)[/_](?:loss|nll)$"),
)


def corpus_loss(model, tokenizer, docs: Sequence[str], batch_size: int = 8, max_len: int = 256,
                desc: str = "scoring", progress: bool = True) -> dict:
    """Mean next-token negative log-likelihood (nats) of the model over every predicted token of `docs`.

    Also the mean over documents of each document's own mean (documents with fewer than
    two tokens predict nothing and are left out of both).
    """
    model_io.check_tokenizer(model, tokenizer)
    ids = model_io.encode(tokenizer, docs, max_len, int(model.config.vocab_size))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total_nll, total_tokens, doc_means = 0.0, 0, []
    for batch in tqdm(model_io.batches(ids, batch_size, max_len, pad_id),
                      total=model_io.num_batches(sum(1 for x in ids if x), batch_size),
                      desc=desc, unit="batch", disable=not progress):
        n = len(batch.index)
        logits = np.asarray(model.logits(batch.input_ids, batch.attention_mask))
        for r in range(n):  # row by row bounds the float64 log-softmax to [T, V]
            weights = batch.attention_mask[r, 1:].astype(np.float64)
            if weights.sum() == 0:
                continue
            logp = log_softmax(logits[r, :-1])
            nll = -np.take_along_axis(logp, batch.input_ids[r, 1:, None].astype(np.int64), axis=-1)[:, 0]
            total_nll += float((nll * weights).sum())
            total_tokens += int(weights.sum())
            doc_means.append(float((nll * weights).sum() / weights.sum()))
    if total_tokens == 0:
        raise SynthflawError("no document has two or more tokens; nothing to score")
    return {"mean_token_loss_nats": total_nll / total_tokens, "tokens": total_tokens,
            "mean_document_loss_nats": float(np.mean(doc_means)), "documents": len(doc_means)}


def stream_of(key: str) -> str | None:
    """The stream a metrics key names ("total" for plain `loss`), or None if it is not a loss."""
    if key == "loss":
        return "total"
    for pattern in _STREAM_RES:
        match = pattern.match(key)
        if match:
            return match.group("stream")
    return None


def read_metrics(path) -> dict[str, tuple[list[int], list[float]]]:
    """stream -> (steps, losses) from a run's metrics JSONL (format in the module docstring)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise SynthflawError(f"{path}: metrics file not found")
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for lineno, record in jsonl.iter_objects(path):
        losses = {stream_of(k): v for k, v in record.items() if k != "step" and stream_of(k)}
        if not losses:
            continue
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise SynthflawError(f"{path}:{lineno}: field 'step' must be an integer, got {step!r}")
        for stream, value in losses.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SynthflawError(f"{path}:{lineno}: loss field for stream {stream!r} must be a number")
            steps, values = curves.setdefault(stream, ([], []))
            steps.append(step)
            values.append(float(value))
    if not curves:
        raise SynthflawError(f"{path}: no loss fields (loss, loss/<stream>, <stream>_loss, ...) in any line")
    return curves


def curve_summary(steps: Sequence[int], values: Sequence[float]) -> dict:
    """First and last loss, relative drop, and the first step at which the loss is halfway down.

    Non-finite values are ignored. `half_drop_step` is the first step whose loss is at or
    below (first + last) / 2; None when the loss did not fall.
    """
    pairs = sorted((s, v) for s, v in zip(steps, values) if math.isfinite(v))
    if not pairs:
        return {"points": 0}
    first, last = pairs[0][1], pairs[-1][1]
    half = (first + last) / 2
    half_step = next((s for s, v in pairs if v <= half), None) if last < first else None
    return {"points": len(pairs), "first_step": pairs[0][0], "last_step": pairs[-1][0],
            "first": first, "last": last, "min": min(v for _, v in pairs),
            "relative_drop": (first - last) / first if first else None, "half_drop_step": half_step}


def plot_loss_curves(curves: dict, path) -> str:
    """Loss against step for every stream, saved as PNG."""
    fig = plots.new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for stream, (steps, values) in sorted(curves.items()):
        order = np.argsort(steps, kind="stable")
        ax.plot(np.asarray(steps)[order], np.asarray(values)[order], label=stream)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Training loss by stream")
    ax.legend()
    return plots.save_png(fig, path)
