"""Demo training stages: each is one `synthflaw unlearn` run (same engine, resumable) whose
HF export is the next stage's starting model."""
from __future__ import annotations

import dataclasses
import json
import pathlib

import ml_collections

from synthflaw_jax import unlearn
from synthflaw_jax.demo import corpora


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: where it starts, what it trains on, with which loss."""

    name: str
    init: str  # "tiny" or the name of an earlier stage
    method: str  # "lm" (pre-training / SFT) or an unlearning method
    data: str  # "lm": the corpus file name; unlearning: the forget file (replay = text)
    steps: int
    learning_rate: float
    qa_format: bool = False  # train on {"question","answer"} records, loss on the answer only
    loss: tuple = ()  # (field, value) pairs set on the engine's `loss` config (unlearning stages)


def stage_config(stage: Stage, data: corpora.DemoData, init_path: str, settings) -> ml_collections.ConfigDict:
    """The unlearning-engine config of one stage (`settings`: the demo's `pipeline.Settings`)."""
    seed, quick = settings.seed, settings.quick
    c = unlearn.default_config()
    c.model.path = init_path
    c.train.steps = stage.steps
    c.train.seed = seed
    c.train.log_every = max(stage.steps // 10, 1)
    c.checkpoint.every = max(stage.steps // 2, 1)
    c.checkpoint.keep = 1
    c.optim.learning_rate = stage.learning_rate
    c.optim.warmup_steps = max(stage.steps // 10, 1)
    c.optim.weight_decay = 0.0
    c.data.seed = seed
    c.data.seq_len = 96 if quick else 128
    c.data.batch_size = 8
    c.data.templates.qa_prompt = corpora.QA_PROMPT
    c.data.templates.qa_target = corpora.QA_TARGET
    c.loss.method = stage.method
    if stage.method == "lm":
        c.data.mixture = "replay=1"
        c.data.streams.forget.source = ""
        c.data.streams.replay.source = str(data.path(stage.data))
        c.data.streams.replay.source_type = "jsonl"
        c.data.streams.replay.format = "qa" if stage.qa_format else "text"
    else:
        c.data.mixture = "forget=1,replay=1"
        c.data.streams.forget.source = str(data.path(stage.data))
        c.data.streams.forget.source_type = "jsonl"
        c.data.streams.forget.format = "qa"
        c.data.streams.replay.source = str(data.path("text"))
        c.data.streams.replay.source_type = "jsonl"
        c.data.streams.replay.format = "text"
        c.loss.bound = settings.bound
        c.loss.replay_weight = 1.0
        c.loss.bias_weight = 0.0
        c.loss.beta = 0.5
        for field, value in stage.loss:
            c.loss[field] = value
    return c


def is_done(stage: Stage, root: pathlib.Path) -> bool:
    """Whether an earlier run finished `stage` (its summary and HF export exist)."""
    workdir = root / stage.name
    return (workdir / "summary.json").exists() and (workdir / "hf" / "config.json").exists()


def run_stage(stage: Stage, root: pathlib.Path, data: corpora.DemoData, settings, progress: bool,
              label: str = "") -> pathlib.Path:
    """Run (or resume, or skip when finished) a stage; returns its workdir. `label` names
    its progress bar."""
    workdir = root / stage.name
    if is_done(stage, root):
        return workdir
    init = "tiny" if stage.init == "tiny" else str(root / stage.init / "hf")
    config = stage_config(stage, data, init, settings)
    unlearn.run(config, workdir, progress=progress, label=label or stage.name)
    return workdir


def read_metrics(workdir: pathlib.Path) -> list[dict]:
    """The per-step metrics a stage wrote."""
    path = workdir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
