"""`eval suite`: a chosen set of evaluations on one or more models, compared side by side.

A task is `{"type": "ifeval"|"mc"|"ppl", "name": ..., <options>}`; without data options
each type uses the small set shipped under `synthflaw_jax/resources/`. The suite loads each
model once, runs every task on it, and writes `OUT/<model>/<task>/` (each task's own
files), `OUT/results.json`, `OUT/report.md` and `OUT/chart.png`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
from typing import Any, Sequence

from synthflaw_jax.errors import SynthflawError

log = logging.getLogger(__name__)

_COMMON = {"name": str, "type": str, "batch_size": int}
TASK_OPTIONS: dict[str, dict[str, type | tuple]] = {
    "ifeval": {"prompts": str, "max_new_tokens": int, "temperature": (int, float), "top_k": int,
               "top_p": (int, float), "seed": int, "chat_template": bool},
    "mc": {"data": str, "dev": str, "shots": int, "seed": int, "style": str},
    "ppl": {"data": str, "max_length": int, "stride": int},
}
PATH_OPTIONS = ("prompts", "data", "dev")
IFEVAL_DEFAULT_MAX_NEW_TOKENS = 256


def resource(*parts: str) -> pathlib.Path:
    """A file shipped in `synthflaw_jax/resources/`."""
    import importlib.resources

    return pathlib.Path(str(importlib.resources.files("synthflaw_jax").joinpath("resources", *parts)))


@dataclasses.dataclass
class Task:
    """One evaluation of the suite: its type, a unique name and its options."""

    type: str
    name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


def parse_tasks(specs: Sequence[Any], where: str, base_dir: pathlib.Path | None = None) -> list[Task]:
    """Tasks from a list of names ("mc") or dicts; relative data paths resolve against `base_dir`."""
    tasks: list[Task] = []
    for i, spec in enumerate(specs):
        at = f"{where}: tasks[{i}]"
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict):
            raise SynthflawError(f"{at}: must be a task type name or an object with a 'type'")
        kind = spec.get("type")
        if kind not in TASK_OPTIONS:
            raise SynthflawError(f"{at}: 'type' must be one of {', '.join(TASK_OPTIONS)}, got {kind!r}")
        allowed = {**_COMMON, **TASK_OPTIONS[kind]}
        options = {}
        for key, value in spec.items():
            if key not in allowed:
                raise SynthflawError(
                    f"{at}: unknown key {key!r} for type {kind!r} (known: {', '.join(sorted(allowed))})")
            if (isinstance(value, bool) and allowed[key] is not bool) or not isinstance(value, allowed[key]):
                raise SynthflawError(f"{at}: {key!r} has the wrong type ({type(value).__name__})")
            if key in PATH_OPTIONS and base_dir is not None:
                value = str((base_dir / pathlib.Path(value).expanduser()).resolve())
            if key not in ("name", "type"):
                options[key] = value
        name = spec.get("name", kind)
        if not name or "/" in name or name.startswith("."):
            raise SynthflawError(f"{at}: 'name' must be a plain, non-empty file name, got {name!r}")
        if any(t.name == name for t in tasks):
            raise SynthflawError(f"{at}: two tasks are named {name!r}; give each a distinct 'name'")
        tasks.append(Task(kind, name, options))
    if not tasks:
        raise SynthflawError(f"{where}: no tasks")
    return tasks


def load_config(path) -> tuple[list[Task], dict[str, Any]]:
    """(tasks, suite-wide settings) from a JSON file or a Python config with `get_config()`;
    both hold `tasks` (a list) and optionally `batch_size`, `seed`. A bucket path is downloaded first."""
    from synthflaw_jax import runtime

    path = pathlib.Path(runtime.local_input(path, "--config"))
    if path.suffix == ".py":
        from synthflaw_jax.config_io import load_config_file

        data = load_config_file(path).to_dict()
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SynthflawError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as err:
            raise SynthflawError(f"{path}: cannot read ({err})") from None
        except json.JSONDecodeError as err:
            raise SynthflawError(f"{path}:{err.lineno}: bad JSON ({err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise SynthflawError(f"{path}: expected an object with a 'tasks' list")
    unknown = set(data) - {"tasks", "batch_size", "seed"}
    if unknown:
        raise SynthflawError(f"{path}: unknown key {sorted(unknown)[0]!r} (known: tasks, batch_size, seed)")
    settings = {}
    for key in ("batch_size", "seed"):
        if key in data:
            if isinstance(data[key], bool) or not isinstance(data[key], int):
                raise SynthflawError(f"{path}: {key!r} must be an integer")
            settings[key] = data[key]
    return parse_tasks(data["tasks"], str(path), path.resolve().parent), settings


# a directory with one of these names is named after its parent (`runs/sft_a/hf` -> `sft_a`)
GENERIC_DIR_NAMES = {"hf", "hf_export", "model", "models", "checkpoint", "ckpt", "export", "final", "params"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _path_name(parts: Sequence[str], depth: int) -> str:
    """The last `depth` meaningful path components, joined with '-'."""
    meaningful = list(parts)
    while len(meaningful) > 1 and meaningful[-1] in GENERIC_DIR_NAMES:
        meaningful.pop()
    return "-".join(meaningful[-depth:])


def parse_models(specs: Sequence[str]) -> list[tuple[str, str]]:
    """(name, path) for each `--model`: `NAME=PATH` names it; a bare PATH is named after its
    directory (a generic last part such as `hf` skipped: `runs/sft_a/hf` -> `sft_a`), with
    parent directories added only where two models would otherwise share a name."""
    given: list[str | None] = []
    paths: list[str] = []
    for spec in specs:
        name, sep, path = str(spec).partition("=")
        if sep and _NAME.fullmatch(name) and not pathlib.Path(spec).exists():
            given.append(name)
            paths.append(path)
        else:
            given.append(None)
            paths.append(str(spec))
    # named as typed (abspath, not resolve: a symlinked run directory keeps its own name)
    parts = [[p for p in pathlib.Path(os.path.abspath(path)).parts if p != "/"] or [path] for path in paths]
    if len(set(map(tuple, parts))) < len(parts):
        raise SynthflawError("--model: the same model is given twice")
    depth = {i: 1 for i, g in enumerate(given) if g is None}
    while True:
        names = [g if g is not None else _path_name(parts[i], depth[i]) for i, g in enumerate(given)]
        clashing = [i for i in depth if names.count(names[i]) > 1 and depth[i] < len(parts[i])]
        if not clashing:
            break
        for i in clashing:
            depth[i] += 1
    for name in names:
        if names.count(name) > 1:
            raise SynthflawError(f"--model: two models are named {name!r}; name them with NAME=PATH")
        if not name or name.startswith("."):
            raise SynthflawError(f"--model: {name!r} is not a usable name; name the model with NAME=PATH")
    return list(zip(names, paths))


# ---------------------------------------------------------------------------- one task

def _run_ifeval(model, task: Task, out: pathlib.Path, batch_size: int, seed: int, progress) -> dict[str, Any]:
    from synthflaw_jax.eval.ifeval import io, runner, scoring

    o = task.options
    prompts_path = o.get("prompts") or io.default_prompts_path()
    records = io.load_prompts(prompts_path)
    responses = model.generate(
        [r.prompt for r in records], o.get("max_new_tokens", IFEVAL_DEFAULT_MAX_NEW_TOKENS),
        temperature=o.get("temperature", 0.0), top_k=o.get("top_k", 0), top_p=o.get("top_p", 1.0),
        seed=o.get("seed", seed), chat_template=o.get("chat_template", True), batch_size=batch_size,
        progress=progress,
    )
    results = scoring.score(records, responses)
    metrics = scoring.compute_metrics(results)
    metrics["prompts_file"] = str(prompts_path)
    io.write_jsonl_atomic(out / runner.RESPONSES_FILE,
                          [{"prompt": r.prompt, "response": x} for r, x in zip(records, responses)])
    io.write_jsonl_atomic(out / runner.PER_PROMPT_FILE, [scoring.result_record(r) for r in results])
    return metrics


def _run_mc(model, task: Task, out: pathlib.Path, batch_size: int, seed: int, progress) -> dict[str, Any]:
    from synthflaw_jax.eval import multiple_choice as mc

    o = task.options
    data = o.get("data") or resource("eval", "mc_sample.jsonl")
    dev = mc.load_items(o["dev"]) if "dev" in o else None
    metrics, records = mc.evaluate(model, mc.load_items(data), shots=o.get("shots", 0), dev=dev,
                                   seed=o.get("seed", seed), style=o.get("style", "text"), batch_size=batch_size,
                                   progress=progress)
    metrics["data"] = str(data)
    mc.write_results(out, metrics, records)
    return metrics


def _run_ppl(model, task: Task, out: pathlib.Path, batch_size: int, seed: int, progress) -> dict[str, Any]:
    from synthflaw_jax.eval import perplexity

    o = task.options
    data = o.get("data") or resource("eval", "ppl_sample.txt")
    metrics = perplexity.evaluate(model, perplexity.load_documents(data), max_length=o.get("max_length"),
                                  stride=o.get("stride"), batch_size=batch_size, progress=progress)
    metrics["data"] = str(data)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


_RUNNERS = {"ifeval": _run_ifeval, "mc": _run_mc, "ppl": _run_ppl}


# ---------------------------------------------------------------------------- the suite

def run(models: Sequence[str], tasks: Sequence[Task], out, *, batch_size: int = 8, seed: int = 0,
        overwrite: bool = False, mesh=None, dtype: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Run every task on every model (each `PATH` or `NAME=PATH`, see `parse_models`; loaded with
    `mesh`/`dtype`); write the per-task files, `results.json`, `report.md` and `chart.png` under
    `out` (atomically). Returns the results. `progress` shows a bar per task, labelled
    `[k/N] model: task`."""
    from synthflaw_jax import outputs
    from synthflaw_jax.eval import report
    from synthflaw_jax.models.loading import load

    if not models:
        raise SynthflawError("--model: give at least one model")
    if batch_size < 1:
        raise SynthflawError(f"--batch-size must be >= 1, got {batch_size}")
    names, models = map(list, zip(*parse_models(models)))
    inputs = [*models, *(t.options.get(k) for t in tasks for k in PATH_OPTIONS)]
    outputs.check(out, overwrite, inputs=inputs, what="--out")
    for p in models:
        if "://" not in str(p) and not pathlib.Path(p).exists():  # bucket models are checked when read
            raise SynthflawError(f"--model {p}: no such file or directory")
    metrics: dict[str, dict[str, Any]] = {}
    total, k = len(models) * len(tasks), 0
    with outputs.directory(out, overwrite, inputs=inputs, what="--out") as tmp:
        for name, path in zip(names, models):
            model = load(path, mesh=mesh, dtype=dtype)
            metrics[name] = {}
            for task in tasks:
                k += 1
                task_dir = tmp / name / task.name
                task_dir.mkdir(parents=True)
                label = f"[{k}/{total}] {name}: {task.name}"
                log.info("%s (%s)", label, task.type)
                metrics[name][task.name] = _RUNNERS[task.type](
                    model, task, task_dir, task.options.get("batch_size", batch_size), seed, progress and label)
        results = {
            "models": [{"name": n, "path": str(p)} for n, p in zip(names, models)],
            "tasks": [{"name": t.name, "type": t.type, "options": t.options} for t in tasks],
            "table": report.headline_table(tasks, names, metrics),
            "metrics": metrics,
        }
        (tmp / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (tmp / "report.md").write_text(report.markdown(results))
        report.bar_chart(results, tmp / "chart.png")
    return results
