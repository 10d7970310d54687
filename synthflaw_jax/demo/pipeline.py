"""The demo end to end: the paper's story replayed on the tiny model.

base (pre-train on non-synthetic text) -> continued pre-training, arm (a) text only and arm
(b) text + uniform synthetic Q-A -> SFT on verifiable instructions -> evaluate; then unlearn
arm (b) (lower-bounded forgetting + replay + bias mitigation, and GA / NPO baselines) ->
SFT -> evaluate -> report. Every stage writes under `out/stages/<name>/` and is skipped or
resumed when the demo is rerun on the same `out`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time

from synthflaw_jax.demo import corpora, evaluate, report
from synthflaw_jax.demo.stages import Stage, run_stage
from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)

STATE_FILE = "demo_state.json"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one demo run; `quick` is the CI smoke test."""

    seed: int
    quick: bool

    @property
    def scale(self) -> float:
        return 0.1 if self.quick else 1.0

    def steps(self, full: int) -> int:
        return max(int(full * self.scale), 3)

    @property
    def n_facts(self) -> int:
        return 40 if self.quick else 120

    @property
    def n_sft(self) -> int:
        return 400 if self.quick else 3000

    @property
    def eval_per_kind(self) -> int:
        return 2 if self.quick else 8

    @property
    def max_new_tokens(self) -> int:
        return 24 if self.quick else 48

    @property
    def bound(self) -> float:
        # lambda, in nats of mean token NLL on the forget answers: they start near 3.2 after
        # arm (b)'s CPT (a random model gives about 7.6), so forgetting may raise them by
        # about 2 nats and no further
        return 5.0


# (name, arm label in the report, SFT'd model stage)
ARMS = (
    ("a", "(a) non-synthetic CPT", "sft_a"),
    ("b", "(b) + synthetic Q-A CPT", "sft_b"),
    ("b_unlearn_lb", "(b) unlearned: lower-bounded + replay + bias", "sft_unlearn_lb"),
    ("b_unlearn_ga", "(b) unlearned: GA", "sft_unlearn_ga"),
    ("b_unlearn_npo", "(b) unlearned: NPO", "sft_unlearn_npo"),
)


def stages(s: Settings) -> list[Stage]:
    """The training stages in order."""
    sft = dict(method="lm", data="sft", steps=s.steps(120), learning_rate=2e-3, qa_format=True)
    unlearn = dict(data="facts_qa", steps=s.steps(60), learning_rate=3e-4)
    return [
        Stage("base", "tiny", "lm", "text", s.steps(250), 2e-3),
        Stage("cpt_a", "base", "lm", "cpt_a", s.steps(150), 1e-3),
        Stage("cpt_b", "base", "lm", "cpt_b", s.steps(150), 1e-3),
        Stage("sft_a", "cpt_a", **sft),
        Stage("sft_b", "cpt_b", **sft),
        Stage("unlearn_lb", "cpt_b", "lower_bounded", **unlearn),
        Stage("unlearn_ga", "cpt_b", "ga", **unlearn),
        Stage("unlearn_npo", "cpt_b", "npo", **unlearn),
        Stage("sft_unlearn_lb", "unlearn_lb", **sft),
        Stage("sft_unlearn_ga", "unlearn_ga", **sft),
        Stage("sft_unlearn_npo", "unlearn_npo", **sft),
    ]


def _check_out(out: pathlib.Path, settings: Settings, overwrite: bool) -> bool:
    """True when `out` holds an unfinished demo with the same settings (resume it)."""
    import shutil

    state_path = out / STATE_FILE
    if not out.exists() or not any(out.iterdir()):
        return False
    if overwrite:
        shutil.rmtree(out)
        return False
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state.get("settings") == dataclasses.asdict(settings) and not state.get("complete"):
            return True
    raise SynthflawError(f"{out}: output directory exists and is not empty (pass --overwrite to replace it)")


def _enable_compilation_cache(out: pathlib.Path) -> None:
    import jax

    jax.config.update("jax_compilation_cache_dir", str(out / ".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run(out: str | pathlib.Path, seed: int = 0, quick: bool = False, overwrite: bool = False,
        progress: bool = True) -> pathlib.Path:
    """Run (or resume) the whole demo into `out`; returns the report path."""
    from synthflaw_jax.demo import conversion

    out = pathlib.Path(out).absolute()
    settings = Settings(seed=seed, quick=quick)
    resuming = _check_out(out, settings, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATE_FILE).write_text(json.dumps({"settings": dataclasses.asdict(settings), "complete": False}))
    if resuming:
        log.info("resuming the demo in %s", out)
    _enable_compilation_cache(out)
    started = time.perf_counter()

    timings = {}
    t0 = time.perf_counter()
    conversion_result = conversion.run(out / "conversion", seed=seed)
    timings["conversion"] = time.perf_counter() - t0
    data = corpora.build(out / "data", settings.n_facts, settings.n_sft, settings.eval_per_kind, seed)
    root = out / "stages"
    for stage in stages(settings):
        t0 = time.perf_counter()
        run_stage(stage, root, data, seed, settings.bound, quick, progress)
        timings[stage.name] = time.perf_counter() - t0

    results = {}
    for arm, _, model_stage in ARMS:
        t0 = time.perf_counter()
        results[arm] = evaluate.evaluate_model(root / model_stage / "hf", data, out / "eval" / arm,
                                               settings.max_new_tokens)
        timings[f"eval_{arm}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    analysis = report.run_analysis(out, data, root, settings)
    timings["analysis"] = time.perf_counter() - t0
    path = report.write(out, settings, data, root, results, analysis, conversion_result, timings,
                        time.perf_counter() - started)
    (out / STATE_FILE).write_text(json.dumps({"settings": dataclasses.asdict(settings), "complete": True}))
    return path
