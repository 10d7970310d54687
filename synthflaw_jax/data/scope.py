"""The pattern scope of the forgetting term: which forget target tokens belong to the
corpus's recurring phrases, as a per-token `pattern_mask` in every forget batch.

An "answer" is a contiguous run of target tokens of one example (a Q-A answer, one
assistant turn). Phrases are word sequences (analysis/patterns.py's word tokens, case
ignored) at three places of an answer: its opening, the opening of its last sentence, and
its closing. They are either detected at the start of a run (`recurring_phrases` over the
whole forget source: prefixes shared by at least `loss.pattern_min_share` of the answers)
or given (`loss.pattern_templates`, each tried at all three places). A target token is in
scope when its text overlaps a matched phrase; where several phrases match at one place
the longest wins. Special tokens (EOS, chat markers that are special tokens) decode to
nothing and are never in scope.

Token text is recovered by decoding: answer text = decode(answer ids), and token k spans
[len(decode(ids[:k])), len(decode(ids[:k+1]))). This works on the batch alone (no change
to how examples are tokenized or packed) and for any tokenizer whose decoding of a prefix
is a prefix of the decoding of the whole.
"""
from __future__ import annotations

import json
import logging
from typing import Sequence

import numpy as np

from synthflaw_jax import forgetting
from synthflaw_jax.analysis import patterns
from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)

PATTERN_FILE = "pattern.json"
CACHE_ANSWERS = 200_000  # answers whose marks are kept (a forget set is usually far smaller)


def target_runs(mask: np.ndarray, segments: np.ndarray | None = None) -> list[tuple[int, int]]:
    """[lo, hi) of each maximal run of mask > 0 positions inside one segment, in order."""
    on = np.flatnonzero(np.asarray(mask) > 0)
    if len(on) == 0:
        return []
    breaks = np.diff(on) != 1
    if segments is not None:
        seg = np.asarray(segments)
        breaks |= seg[on[1:]] != seg[on[:-1]]
    cuts = np.flatnonzero(breaks) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(on)]])
    return [(int(on[s]), int(on[e - 1]) + 1) for s, e in zip(starts, ends)]


class PatternMarker:
    """Marks the tokens of an answer covered by the phrases {place: [word tuples]}."""

    def __init__(self, tokenizer, phrases: dict[str, Sequence[Sequence[str]]]):
        self.tokenizer = tokenizer
        self.phrases = {place: sorted({tuple(p) for p in phrases.get(place, ())}, key=lambda p: (-len(p), p))
                        for place in patterns.PLACES}
        self._cache: dict[tuple[int, ...], np.ndarray] = {}  # answer ids -> flags: epochs repeat answers
        self.report: dict | None = None  # what `prepare` found, for pattern.json

    def _decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def matches(self, text: str) -> list[tuple[str, tuple[str, ...], int, int]]:
        """(place, phrase, start char, end char) of the longest phrase matching at each place."""
        spans = patterns.word_spans(text)
        words = [w for w, _, _ in spans]
        last = patterns.last_sentence_start(text, spans)
        found = []
        for place in patterns.PLACES:
            for phrase in self.phrases[place]:
                n = len(phrase)
                if place == "opening":
                    lo = 0
                elif place == "closing":  # inside the last sentence, like detection
                    lo = len(words) - n if len(words) - n >= (last or 0) else -1
                else:
                    if last is None:
                        break
                    lo = last
                if lo >= 0 and tuple(words[lo:lo + n]) == phrase and lo + n <= len(words):
                    found.append((place, phrase, spans[lo][1], spans[lo + n - 1][2]))
                    break
        return found

    def mark(self, ids: Sequence[int]) -> tuple[np.ndarray, list[tuple[str, tuple[str, ...], int]]]:
        """(in-scope flags [len(ids)] bool, [(place, phrase, tokens marked)]) for one answer."""
        ids = list(ids)
        out = np.zeros(len(ids), bool)
        found = self.matches(self._decode(ids)) if ids else []
        if not found:
            return out, []
        lengths: dict[int, int] = {0: 0}

        def length(k: int) -> int:  # characters decoded from the first k tokens
            if k not in lengths:
                lengths[k] = len(self._decode(ids[:k]))
            return lengths[k]

        counts = []
        for place, phrase, start, end in found:
            lo, hi = 0, len(ids)  # first token whose text ends after `start`
            while lo < hi:
                mid = (lo + hi) // 2
                if length(mid + 1) > start:
                    hi = mid
                else:
                    lo = mid + 1
            k, n = lo, 0
            while k < len(ids) and length(k) < end:
                if length(k + 1) > length(k):  # tokens that decode to nothing are never marked
                    n += int(not out[k])
                    out[k] = True
                k += 1
            counts.append((place, phrase, n))
        return out, counts

    def batch_mask(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """int32 [rows, seq_len]: 1 on the in-scope target tokens of a packed/padded batch."""
        ids, mask = batch["input_ids"], batch["loss_mask"]
        segments = batch.get("segment_ids")
        out = np.zeros(mask.shape, np.int32)
        for r in range(mask.shape[0]):
            for lo, hi in target_runs(mask[r], None if segments is None else segments[r]):
                key = tuple(int(i) for i in ids[r, lo:hi])
                flags = self._cache.get(key)
                if flags is None:
                    flags = self.mark(key)[0]
                    if len(self._cache) < CACHE_ANSWERS:
                        self._cache[key] = flags
                out[r, lo:hi] = flags
        return out


def template_phrases(templates: Sequence[str]) -> dict[str, list[tuple[str, ...]]]:
    """Given templates as phrases at every place (word tokens, case ignored)."""
    grams = [tuple(patterns.word_tokens(t)) for t in templates]
    grams = [g for g in grams if g]
    return {place: list(grams) for place in patterns.PLACES}


def forget_answers(data_config, tokenizer) -> tuple[list[list[int]], int]:
    """(token ids of every answer of the forget source, number of target tokens), formatted
    as the training stream formats it (before truncation)."""
    from synthflaw_jax.data import config as config_lib
    from synthflaw_jax.data import formats, pipeline

    spec = config_lib.format_spec(data_config, "forget")
    source = pipeline.open_stream_source(data_config, "forget", spec)
    formatter = formats.Formatter(tokenizer, spec)
    answers, n_targets = [], 0
    chunk = 256
    for lo in range(0, len(source), chunk):
        records = [source[i] for i in range(lo, min(lo + chunk, len(source)))]
        try:
            examples = formatter(records)
        except SynthflawError:
            examples = []
            for record in records:
                try:
                    examples.extend(formatter([record]))
                except SynthflawError as err:
                    if not data_config.skip_bad_records:
                        raise SynthflawError(f"{record.get('_origin', 'forget')}: {err}") from None
        for ex in examples:
            n_targets += int(np.sum(ex.mask > 0))
            answers.extend([ex.ids[lo_:hi_].tolist() for lo_, hi_ in target_runs(ex.mask)])
    return answers, n_targets


def build(loss_cfg: dict, data_config, tokenizer) -> tuple[PatternMarker, dict]:
    """(marker, report) for a validated loss config with forget_scope="pattern": phrases from
    `pattern_templates` or detected over the forget source, and what they cover there."""
    answers, n_targets = forget_answers(data_config, tokenizer)
    if not answers:
        raise SynthflawError("loss forget_scope='pattern': the forget stream has no target tokens")
    probe = PatternMarker(tokenizer, {})
    texts = [probe._decode(a) for a in answers]
    templates = list(loss_cfg["pattern_templates"])
    if templates:
        phrases = template_phrases(templates)
        found = {place: [{"words": g} for g in grams] for place, grams in phrases.items()}
    else:
        found = patterns.recurring_phrases(texts, loss_cfg["pattern_min_share"])
        phrases = {place: [e["words"] for e in entries] for place, entries in found.items()}
    marker = PatternMarker(tokenizer, phrases)
    tally: dict[tuple[str, tuple], list[int]] = {}
    covered = covered_docs = 0
    for ids in answers:
        flags, counts = marker.mark(ids)
        if len(marker._cache) < CACHE_ANSWERS:
            marker._cache[tuple(ids)] = flags
        covered += int(flags.sum())
        covered_docs += int(flags.any())
        for place, phrase, n in counts:
            entry = tally.setdefault((place, phrase), [0, 0])
            entry[0] += 1
            entry[1] += n
    rows = []
    for place in patterns.PLACES:
        for e in found[place]:
            docs, toks = tally.get((place, tuple(e["words"])), [0, 0])
            rows.append({"place": place, "text": " ".join(e["words"]), "words": list(e["words"]),
                         "documents": docs, "share": docs / len(answers), "tokens_covered": toks})
    report = {
        "source": str(data_config.streams.forget.source),
        "answers": len(answers),
        "detected": not templates,
        "templates": templates,
        "min_share": None if templates else loss_cfg["pattern_min_share"],
        "patterns": rows,
        "target_tokens": n_targets,
        "covered_tokens": covered,
        "covered_share": covered / max(n_targets, 1),
        "covered_answers": covered_docs,
    }
    return marker, report


def prepare(config, tokenizer, workdir=None, write: bool = True) -> PatternMarker | None:
    """The forget stream's marker for an unlearning config with forget_scope="pattern" (else
    None), its report (also `marker.report`) written to `workdir/pattern.json` when a
    workdir is given and `write`; a resumed run whose forget data now give a different
    report is refused (checked whenever a workdir is given, before anything is written)."""
    from synthflaw_jax import losses
    from synthflaw_jax.data import config as config_lib

    c = losses.validate_loss_config(config.loss)
    if not forgetting.uses_pattern_scope(c):
        return None
    if "forget" not in config_lib.active_streams(config.data):
        raise SynthflawError("loss forget_scope='pattern': config data.streams.forget has no source")
    marker, report = build(c, config.data, tokenizer)
    marker.report = report
    log.info("pattern scope: %d phrase(s) cover %d of %d forget target tokens (%.1f%%)", len(report["patterns"]),
             report["covered_tokens"], report["target_tokens"], 100 * report["covered_share"])
    if report["covered_tokens"] == 0:
        log.warning("pattern scope: no forget token is covered; the forgetting term will be 0 (see %s)", PATTERN_FILE)
    if workdir is not None:
        path, text = workdir / PATTERN_FILE, json.dumps(report, indent=2) + "\n"
        if path.exists():  # resuming: the objective must not change under the run
            if path.read_text() != text:
                raise SynthflawError(
                    f"{path}: the forget corpus now gives a different pattern scope than when this run "
                    "started; restore the forget data or use a new --workdir"
                )
        elif write:
            write_report(workdir, report)
    return marker


def write_report(workdir, report: dict) -> None:
    """Write `report` as `workdir/pattern.json` (atomically; the workdir must exist)."""
    from synthflaw_jax import outputs

    outputs.write_text(workdir / PATTERN_FILE, json.dumps(report, indent=2) + "\n", overwrite=True, checked=True)
