"""The paper's experiment on a real instruction-tuned model (e.g. smollm2-135m-instruct).

Arms, all starting from the same model, all with the same steps and the same real-text rows
per step (so the same real-text tokens):
  a  continued pre-training (CPT) on real text only
  b  CPT on real text + TOFU in one uniform Q-A form (extra rows per step)
  c  CPT on real text + the same TOFU records in diverse Q-A forms (same extra rows)
then unlearning on b (forget = b's uniform texts, targets from the wrapper's "Answer:" on;
replay = real text), one run per method, and direct evaluation of every model (it is
already instruction-tuned: no SFT stage): IFEval on a fixed prompt subset, response length,
the share of degenerate outputs, the share of answers that open like the synthetic data,
the probability of the wrapper on held-out TOFU questions, the facts (TOFU answer NLL),
held-out real-text perplexity, and the output shift from the starting model. Every stage is one `synthflaw_jax.unlearn.run`
(resumable); every evaluation is cached, so a rerun on the same `out` continues.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import platform
import time
import zlib

import numpy as np

from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.real_experiment import data as xdata


# The uniform form "Question: {q}\nAnswer: {a}" split before "Answer:", so that the wrapper's
# second half is a forget target (with the split after it, unlearning would only ever touch
# the answers, never the pattern). The text is the same as arm b's, token for token at the cut.
QA_PROMPT = "Question: {question}\n"
QA_TARGET = "Answer: {answer}"
WRAPPER = "Answer:"  # the pattern: in every uniform text, in none of the diverse ones

# name -> loss-config overrides; the names and forms are the toy demo's. The NLL bound is set
# per run relative to the CPT'd model's own forget NLL (see `Settings.bound_margin`), so it
# means the same on any model. ul_pattern's scope is given, not detected: TOFU's answers share
# no opening or closing phrase (the most common two-word opening, "Yes ,", is on 9.8% of the
# first 400), so detection at the default 30% share would find nothing.
METHODS = {
    "ul_pattern": {"method": "lower_bounded", "bound_form": "unlikelihood", "forget_scope": "pattern",
                   "pattern_templates": [WRAPPER]},
    "ul_all": {"method": "lower_bounded", "bound_form": "unlikelihood"},
    "hinge": {"method": "lower_bounded", "bound_form": "hinge"},
    "smooth": {"method": "lower_bounded", "bound_form": "smooth"},
    "ga": {"method": "ga", "bias_weight": 0.0},
    "npo": {"method": "npo", "bias_weight": 0.0},
    "simnpo": {"method": "simnpo", "bias_weight": 0.0},
}
# Fixed before any real-model run, as in the toy demo: the method the toy's rule chose
# (ul_pattern), the NLL-space form (hinge) and the standard baseline (ga).
DEFAULT_METHODS = ("ul_pattern", "hinge", "ga")
DEGENERATE_ZLIB = 0.15  # compressed/raw bytes below this (on >= 200 bytes) = a repetition loop;
# the lowest ratio among the 541 text-bison IFEval reference responses is 0.19


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes and budgets of one run. The defaults aim at about an hour on 2 quiet CPU cores
    for the 135M model (an estimate from per-step timings, not a measured full run)."""

    model: str = "smollm2-135m-instruct"
    tofu: str = ""
    ifeval_prompts: str = ""  # IFEval input_data.jsonl; "" = the small set shipped with the package
    seed: int = 0
    n_facts: int = 400  # the first TOFU records (20 authors x 20 questions)
    seq_len: int = 256
    text_rows: int = 2  # real-text rows per step, every arm
    qa_rows: int = 2  # extra synthetic rows per step, arms b and c
    cpt_steps: int = 40
    cpt_lr: float = 2e-4
    unlearn_steps: int = 20
    unlearn_lr: float = 1e-4  # set before the full run: 1e-5 for 4 steps moved b's forget NLL by 0.01 nats
    bound_margin: float = 1.0  # nats above the CPT'd model's own mean forget NLL
    methods: tuple = DEFAULT_METHODS
    n_ifeval: int = 32  # every k-th prompt of the file so that n_ifeval are taken (fixed subset)
    max_new_tokens: int = 256
    gen_batch: int = 16
    n_fact_probe: int = 64
    n_ppl_docs: int = 64

    @classmethod
    def tiny(cls, **overrides) -> "Settings":
        """The CI smoke size (any model; meant for a random tiny one)."""
        base = dict(n_facts=24, seq_len=64, text_rows=1, qa_rows=1, cpt_steps=2, unlearn_steps=2,
                    n_ifeval=4, max_new_tokens=8, gen_batch=4, n_fact_probe=4, n_ppl_docs=4)
        return cls(**{**base, **overrides})


def _subset_prompts(path: str, n: int, out: pathlib.Path) -> pathlib.Path:
    from synthflaw_jax.eval.ifeval import io as ifeval_io

    src = pathlib.Path(path) if path else ifeval_io.default_prompts_path()
    lines = [line for line in pathlib.Path(src).read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(len(lines) // max(n, 1), 1)
    chosen = lines[::step][:n]
    target = out / "data" / "ifeval_subset.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return target


def prepare_data(s: Settings, out: pathlib.Path) -> dict:
    """Write the arms' JSONL files under out/data; returns paths, counts and sha256 fingerprints."""
    all_records = xdata.read_tofu(s.tofu)
    records = all_records[: s.n_facts]
    held_facts = all_records[s.n_facts: s.n_facts + s.n_fact_probe]  # other authors, never trained on
    if len(held_facts) < s.n_fact_probe:
        raise SynthflawError(f"--tofu {s.tofu}: {len(all_records)} records; the run needs n_facts + n_fact_probe = "
                             f"{s.n_facts + s.n_fact_probe} (the last {s.n_fact_probe} are held out)")
    train, held = xdata.real_text()
    d = out / "data"
    info = {"files": {}, "sha256": {}}
    files = {
        "text": [{"text": t} for t in train],
        "held_out_text": [{"text": t} for t in held[: s.n_ppl_docs]],
        "uniform": [{"text": t} for t in xdata.uniform_texts(records)],
        "diverse": [{"text": t} for t in xdata.diverse_texts(records, s.seed)],
        "forget": records,
        "held_out_facts": held_facts,
    }
    for name, rows in files.items():
        path = d / f"{name}.jsonl"
        info["sha256"][name] = xdata.write_jsonl(path, rows)
        info["files"][name] = str(path)
    info["counts"] = {k: len(v) for k, v in files.items()}
    answers = [r["answer"] for r in records]
    info["tofu_openings"] = xdata.top_openings(answers, k=2, top=5)
    info["diverse_top_opening_share"] = xdata.top_openings([r["text"] for r in files["diverse"]], k=1, top=1)[0][1]
    info["uniform_top_opening_share"] = xdata.top_openings([r["text"] for r in files["uniform"]], k=1, top=1)[0][1]
    info["ifeval_subset"] = str(_subset_prompts(s.ifeval_prompts, s.n_ifeval, out))
    return info


def _base_config(s: Settings, model_path: str, steps: int, lr: float, tokenizer: str):
    from synthflaw_jax import unlearn

    c = unlearn.default_config()
    c.model.path = model_path
    c.train.steps = steps
    c.train.seed = s.seed
    c.train.log_every = max(steps // 5, 1)
    c.checkpoint.every = steps
    c.checkpoint.keep = 1
    c.checkpoint.async_save = False
    c.optim.learning_rate = lr
    c.optim.warmup_steps = max(steps // 10, 1)
    c.optim.weight_decay = 0.0
    c.data.tokenizer = tokenizer
    c.data.seed = s.seed
    c.data.seq_len = s.seq_len
    c.data.add_bos = False  # SmolLM2's BOS is <|im_start|>; plain text does not start with a turn
    c.data.templates.qa_prompt = QA_PROMPT
    c.data.templates.qa_target = QA_TARGET
    for stream in ("forget", "replay", "retain"):
        c.data.streams[stream].source_type = "jsonl"
    return c


def cpt_config(s: Settings, arm: str, model_path: str, tokenizer: str, info: dict):
    """The engine config of CPT arm a, b or c: `text_rows` real-text rows per step in every arm,
    plus `qa_rows` synthetic rows (uniform for b, diverse for c), trained as text."""
    c = _base_config(s, model_path, s.cpt_steps, s.cpt_lr, tokenizer)
    c.loss.method = "lm"
    c.data.streams.forget.source = ""
    c.data.streams.replay.source = info["files"]["text"]
    c.data.streams.replay.format = "text"
    if arm == "a":
        c.data.batch_size = s.text_rows
        c.data.mixture = "replay=1"
    else:
        c.data.batch_size = s.text_rows + s.qa_rows
        c.data.mixture = f"replay={s.text_rows},retain={s.qa_rows}"
        c.data.streams.retain.source = info["files"]["uniform" if arm == "b" else "diverse"]
        c.data.streams.retain.format = "text"
    return c


def unlearn_config(s: Settings, method: str, model_path: str, tokenizer: str, info: dict, bound: float):
    """The engine config of one unlearning run on arm b's model."""
    c = _base_config(s, model_path, s.unlearn_steps, s.unlearn_lr, tokenizer)
    c.data.batch_size = s.text_rows + s.qa_rows
    c.data.mixture = f"forget={s.qa_rows},replay={s.text_rows}"
    c.data.streams.forget.source = info["files"]["forget"]
    c.data.streams.forget.format = "qa"
    c.data.streams.replay.source = info["files"]["text"]
    c.data.streams.replay.format = "text"
    c.loss.bound = float(bound)
    c.loss.replay_weight = 1.0
    c.loss.beta = 0.5
    if method not in METHODS:
        raise SynthflawError(f"method {method!r}: not one of {', '.join(METHODS)}")
    for key, value in METHODS[method].items():
        if key not in c.loss:
            raise SynthflawError(f"method {method}: this build's loss config has no field {key!r}")
        c.loss[key] = value
    from synthflaw_jax import losses

    losses.validate_loss_config(c.loss)
    return c


def _run_stage(name: str, config, out: pathlib.Path, progress: bool) -> pathlib.Path:
    from synthflaw_jax import unlearn

    workdir = out / "stages" / name
    if not ((workdir / "summary.json").exists() and (workdir / "hf" / "config.json").exists()):
        unlearn.run(config, workdir, progress=progress)
    return workdir / "hf"


# --------------------------------------------------------------------------- evaluation
def degenerate(text: str) -> bool:
    """A repetition loop: text that compresses to under DEGENERATE_ZLIB of its size, or whose
    lines (of >= 6 characters, at least 6 of them) are >= 60% repeats, or in which one word
    4-gram covers >= half of the words. None of the 541 text-bison IFEval reference responses
    is flagged."""
    raw = text.encode("utf-8")
    if len(raw) >= 200 and len(zlib.compress(raw, 9)) / len(raw) < DEGENERATE_ZLIB:
        return True
    lines = [line.strip() for line in text.splitlines() if len(line.strip()) >= 6]
    if len(lines) >= 6 and 1 - len(set(lines)) / len(lines) >= 0.6:
        return True
    words = text.split()
    if len(words) < 24:
        return False
    grams: dict[tuple, int] = {}
    for i in range(len(words) - 3):
        key = tuple(words[i:i + 4])
        grams[key] = grams.get(key, 0) + 1
    return max(grams.values()) * 4 >= 0.5 * len(words)


def opens_like_synthetic(text: str, openings: list[str]) -> bool:
    """Whether a response opens with the uniform Q-A wrapper or a top TOFU answer opening."""
    t = text.strip()
    return t.startswith(("Question:", "Answer:")) or any(t.startswith(o) for o in openings if o)


def _continuation_scores(model, pairs: list[tuple[str, str]]) -> list:
    """loglik scores of each continuation text after its context text (no special tokens)."""
    from synthflaw_jax.eval import loglik

    tok = model.tokenizer
    requests = []
    for context, continuation in pairs:
        ctx = list(tok(context, add_special_tokens=False)["input_ids"])
        cont = list(tok(continuation, add_special_tokens=False)["input_ids"])
        requests.append(loglik.Request(ctx + cont, [0.0] * len(ctx) + [1.0] * len(cont)))
    return loglik.score_requests(model, requests, batch_size=8)


def _mean_nll(scores) -> float:
    return -sum(sc.logprob for sc in scores) / max(sum(sc.tokens for sc in scores), 1)


def fact_nll(model, records: list[dict]) -> float:
    """Mean per-token NLL (nats) of TOFU answers after their question (a neutral 'Q\\n' prompt)."""
    return _mean_nll(_continuation_scores(model, [(r["question"] + "\n", r["answer"]) for r in records]))


def forget_nll(model, records: list[dict]) -> float:
    """Mean per-token NLL of TOFU answers in the unlearning format (what the bound is set on)."""
    return _mean_nll(_continuation_scores(model, [(QA_PROMPT.format(**r), QA_TARGET.format(**r)) for r in records]))


def wrapper_probs(model, records: list[dict]) -> list[float]:
    """Probability of the uniform wrapper's "Answer:" after "Question: {q}" and a newline, per
    record (held-out TOFU questions): how strongly the model has taken up the pattern."""
    scores = _continuation_scores(model, [(QA_PROMPT.format(**r), WRAPPER) for r in records])
    return [float(np.exp(sc.logprob)) for sc in scores]


def evaluate(model_path: str, s: Settings, info: dict, out: pathlib.Path, base_logits=None) -> dict:
    """Every metric of one model; cached in out/metrics.json, responses in out/responses.jsonl."""
    import synthflaw_jax
    from synthflaw_jax.analysis import shift
    from synthflaw_jax.eval import perplexity
    from synthflaw_jax.eval.ifeval import io as ifeval_io
    from synthflaw_jax.eval.ifeval import scoring

    cached = out / "metrics.json"
    if cached.exists():  # the cheap text measures are recomputed, so they follow their definitions
        summary = json.loads(cached.read_text())
        responses = [json.loads(line)["response"] for line in (out / "responses.jsonl").read_text().splitlines()]
        summary["degenerate_share"] = float(np.mean([degenerate(r) for r in responses]))
        summary["response_words_per_prompt"] = [len(r.split()) for r in responses]
        return summary
    start = time.perf_counter()
    model = synthflaw_jax.load(model_path)
    records = ifeval_io.load_prompts(info["ifeval_subset"])
    responses = [r.strip() for r in model.generate([r.prompt for r in records], s.max_new_tokens,
                                                   batch_size=s.gen_batch)]
    results = scoring.score(records, responses)
    metrics = scoring.compute_metrics(results)
    openings = [o for o, share in info["tofu_openings"] if share >= 0.05]
    facts = [json.loads(line) for line in pathlib.Path(info["files"]["forget"]).read_text().splitlines()]
    held_facts = [json.loads(line) for line in pathlib.Path(info["files"]["held_out_facts"]).read_text().splitlines()]
    held = [json.loads(line)["text"] for line in pathlib.Path(info["files"]["held_out_text"]).read_text().splitlines()]
    tok = model.tokenizer
    summary = {
        "ifeval_prompt_strict": metrics["prompt_level_strict_acc"],
        "ifeval_inst_strict": metrics["inst_level_strict_acc"],
        "ifeval_prompt_loose": metrics["prompt_level_loose_acc"],
        "ifeval_per_prompt_strict": [bool(r.follow_all_strict) for r in results],
        "degenerate_share": float(np.mean([degenerate(r) for r in responses])),
        "synthetic_opening_share": float(np.mean([opens_like_synthetic(r, openings) for r in responses])),
        "mean_response_words": float(np.mean([len(r.split()) for r in responses])),
        "response_words_per_prompt": [len(r.split()) for r in responses],
        "fact_nll": fact_nll(model, facts[: s.n_fact_probe]),
        "forget_nll": forget_nll(model, facts[: s.n_fact_probe]),
        "wrapper_prob_per_question": wrapper_probs(model, held_facts),
        "ppl_held_out_text": perplexity.evaluate(model, held, max_length=s.seq_len, batch_size=8)["ppl"],
    }
    summary["wrapper_prob_held_out"] = float(np.mean(summary["wrapper_prob_per_question"]))
    probe = [r.prompt for r in records[:8]]
    ids = tok(probe, padding=True, return_tensors="np")
    logits = np.asarray(model.logits(ids["input_ids"], ids["attention_mask"]))
    if base_logits is not None:
        summary["shift_from_start"] = shift.logit_shift(base_logits, logits, ids["attention_mask"])
    summary["eval_seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    ifeval_io.write_jsonl_atomic(out / "responses.jsonl", [
        {"prompt": rec.prompt, "response": resp, "follow_all_strict": res.follow_all_strict}
        for rec, resp, res in zip(records, responses, results)])
    np.save(out / "probe_logits.npy", logits)
    cached.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def paired_interval(x: list, y: list, seed: int = 0, n: int = 2000) -> tuple[float, float, float]:
    """mean(y - x) over paired items (prompts, questions) and its 95% paired bootstrap
    interval (resampling the items)."""
    d = np.asarray(y, float) - np.asarray(x, float)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# --------------------------------------------------------------------------- the whole run
def run(s: Settings, out: str | pathlib.Path, progress: bool = True) -> dict:
    """Run (or continue) the experiment into `out`; writes out/results.json and out/report.md."""
    import jax

    from synthflaw_jax import named_models
    from synthflaw_jax.real_experiment import report

    unknown = [m for m in s.methods if m not in METHODS]
    if unknown:
        raise SynthflawError(f"--set methods: {', '.join(unknown)} not one of {', '.join(METHODS)}")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "results.json"
    # seconds per stage summed over invocations: a resumed run adds its remaining work, and a
    # rerun over finished stages (cached) keeps the first run's figures
    timings: dict[str, float] = json.loads(previous.read_text()).get("timings", {}) if previous.exists() else {}
    t0 = time.perf_counter()
    start_model = named_models.resolve(s.model, progress=progress)
    timings["resolve_model"] = time.perf_counter() - t0
    info = prepare_data(s, out)
    results: dict[str, dict] = {}

    def timed(key, fn):
        t = time.perf_counter()
        value = fn()
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t
        return value

    versions = {"python": platform.python_version(), "jax": jax.__version__, "machine": platform.machine()}
    bound = None

    def save() -> dict:  # after every evaluation, so a run cut short still leaves its table
        doc = {"settings": dataclasses.asdict(s), "model_path": start_model, "data": info, "bound": bound,
               "results": results, "timings": timings, "versions": versions}
        (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
        (out / "report.md").write_text(report.render(doc))
        return doc

    base = timed("eval_start", lambda: evaluate(start_model, s, info, out / "eval" / "start"))
    base_logits = np.load(out / "eval" / "start" / "probe_logits.npy")
    results["start"] = base
    models = {}
    for arm in ("a", "b", "c"):
        config = cpt_config(s, arm, start_model, start_model, info)
        models[arm] = timed(f"cpt_{arm}", lambda: _run_stage(f"cpt_{arm}", config, out, progress))
        results[arm] = timed(f"eval_{arm}", lambda: evaluate(str(models[arm]), s, info, out / "eval" / arm,
                                                              base_logits))
        save()
    bound = results["b"]["forget_nll"] + s.bound_margin
    for method in s.methods:
        key = f"b_unlearn_{method}"
        config = unlearn_config(s, method, str(models["b"]), start_model, info, bound)
        hf = timed(key, lambda: _run_stage(key, config, out, progress))
        results[key] = timed(f"eval_{key}", lambda: evaluate(str(hf), s, info, out / "eval" / key, base_logits))
        save()
    return save()
