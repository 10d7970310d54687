"""The unlearning run: config -> data -> sharded jitted steps -> checkpoints -> HF export.

Everything goes under the workdir: `config.json` (the resolved config; a rerun with a
different one is refused), `checkpoints/<step>/`, `metrics.jsonl` (one line per step),
`tensorboard/` (the same metrics as event files), `summary.json`, the final Hugging Face
export `hf/` and, with `loss.forget_scope="pattern"`, `pattern.json` (the forget corpus's
recurring phrases and the target tokens they cover, data/scope.py). Rerunning the same command resumes
from the newest complete checkpoint, data iterator included, so the run continues exactly.

The workdir may be a bucket (`gs://...`). On a multi-host job (runtime.py) every host runs
this same function: all take part in every step, checkpoint and gather; process 0 alone
shows progress and writes config.json, the metrics, the summary and the HF export.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from synthflaw_jax import checkpoint as ckpt_lib
from synthflaw_jax import config_io, convert, hf_weights, losses, outputs, runtime, stopping, train
from synthflaw_jax import sharding as shd
from synthflaw_jax.data import config as data_config
from synthflaw_jax.data import layout, pipeline, scope
from synthflaw_jax.data import tokenizer as tok_lib
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models import llama, presets
from synthflaw_jax.models.config import ModelConfig

log = logging.getLogger(__name__)

EXIT_DIVERGED = 3


class TrainingDiverged(SynthflawError):
    """The loss or gradient became NaN/inf; the run stopped without saving that step."""


def default_config() -> ml_collections.ConfigDict:
    """Every section of an unlearning config with its defaults (the tiny CPU setting)."""
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict()
    c.model.path = "tiny"          # HF dir or synthflaw checkpoint; "tiny" = random tiny model (smoke tests)
    c.model.param_dtype = "float32"  # params and optimizer state are kept in this dtype
    c.model.dtype = "float32"      # compute dtype of activations ("bfloat16" on TPU)
    c.model.remat_policy = "none"  # none | full | dots | dots_no_batch
    c.model.attention_kernel = "xla"  # xla | reference | pallas_tpu
    c.data = data_config.default_data_config()
    c.loss = losses.default_loss_config()
    c.optim = train.default_optim_config()
    c.train = ml_collections.ConfigDict()
    c.train.steps = 100            # optimizer steps in the whole run
    c.train.grad_accum = 1         # microbatches per step (lax.scan); rows per stream must divide
    c.train.max_segments = 0       # packed forget rows: max examples per row for per-example losses
                                   # (0 = seq_len // 8 when packing, 1 without packing)
    c.train.seed = 0               # model init ("tiny") and step RNG
    c.train.log_every = 10         # fetch metrics from the device every N steps (no per-step sync)
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1
    c.mesh.fsdp = -1               # -1 = all remaining devices
    c.mesh.tensor = 1
    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 50        # save every N steps (and always at the end)
    c.checkpoint.keep = 2          # keep the newest K steps
    c.checkpoint.async_save = True
    c.checkpoint.export_hf = True  # write workdir/hf at the end
    c.runtime = runtime.default_runtime_config()  # multi-host launch settings (see runtime.py);
                                   # not recorded in config.json: they may differ per process
    return c


@dataclasses.dataclass
class RunResult:
    """What a finished run produced."""

    workdir: pathlib.Path  # an etils.epath.Path for a bucket workdir
    final_step: int
    resumed_from: int | None
    last_metrics: dict
    hf_dir: pathlib.Path | None


# Sections that describe how a run is launched, not what it computes: left out of config.json.
_LAUNCH_SECTIONS = ("runtime",)


def _record_config(workdir: pathlib.Path, config) -> None:
    path = workdir / "config.json"
    recorded = ml_collections.ConfigDict(config.to_dict())
    for section in _LAUNCH_SECTIONS:
        if section in recorded:
            del recorded[section]
    resolved = config_io.to_json(recorded)
    if path.exists():
        if path.read_text() != resolved:
            old, new = json.loads(path.read_text()), json.loads(resolved)
            diff = _first_difference(old, new)
            raise SynthflawError(
                f"{path}: this workdir was started with a different config ({diff}); "
                "rerun with the same config to resume, or use a new --workdir"
            )
        return
    if not runtime.is_main():
        return
    outputs.write_text(path, resolved, overwrite=True, checked=True)


def _first_difference(old, new, prefix="") -> str:
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a!r} -> {b!r}"
    return ""


def _model_config(config, tokenizer) -> tuple[ModelConfig, pathlib.Path | None]:
    runtime = dict(dtype=config.model.dtype, param_dtype=config.model.param_dtype,
                   remat_policy=config.model.remat_policy, attention_kernel=config.model.attention_kernel)
    if config.model.path == "tiny":
        return presets.tiny(vocab_size=len(tokenizer), **runtime), None
    from synthflaw_jax import named_models

    path = pathlib.Path(named_models.resolve(config.model.path))
    if not path.exists():
        raise SynthflawError(f"config model.path: {path} does not exist")
    return ModelConfig.from_file(path / "config.json", **runtime), path


def _load_params(config, model_cfg, model_path, mesh):
    if model_path is None:
        return llama.init_params(model_cfg, jax.random.key(int(config.train.seed)), mesh)
    from synthflaw_jax.models.loading import load

    loaded = load(model_path, mesh=mesh, dtype=config.model.param_dtype)
    return loaded.params


def _assets_dir(config, model_path) -> pathlib.Path | None:
    if model_path is not None:
        assets = model_path / "assets" if convert.is_model_checkpoint(model_path) else model_path
        if assets.is_dir():
            return assets
    if config.data.tokenizer == tok_lib.TINY:
        return tok_lib.tiny_tokenizer_dir()
    return None


def _int_field(config, key: str, minimum: int) -> int:
    section, field = key.split(".")
    value = config[section][field]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SynthflawError(f"config {key}: must be an integer >= {minimum}, got {value!r}")
    return value


def _check_train_config(config) -> int:
    """Check the train/checkpoint sections (the others are checked where they are used,
    still before the workdir is touched); returns train.steps."""
    for key, minimum in (("train.steps", 1), ("train.grad_accum", 1), ("train.max_segments", 0),
                         ("train.log_every", 1), ("checkpoint.every", 1), ("checkpoint.keep", 1)):
        _int_field(config, key, minimum)
    if config.model.path != "tiny" and not str(config.model.path).strip():
        raise SynthflawError("config model.path: is empty (an HF directory, a checkpoint, or 'tiny')")
    return int(config.train.steps)


def _check_workdir(workdir, model_path) -> None:
    """A local workdir may not lie under a file, be the model's directory or lie inside it,
    nor hold the model where the run writes (hf/, checkpoints/)."""
    outputs.check_location(workdir, "--workdir")
    if runtime.is_remote(workdir):
        return
    if model_path is None:
        return
    real_model = pathlib.Path(os.path.realpath(model_path))
    for out in (workdir, workdir / "hf", workdir / "checkpoints"):
        real_out = pathlib.Path(os.path.realpath(out))
        inside = real_model in real_out.parents if out == workdir else real_out in real_model.parents
        if real_model == real_out or inside:
            raise SynthflawError(f"--workdir {workdir}: overlaps the model {model_path} "
                                 f"(config model.path); use a workdir outside it")


def _check_rows(config, grad_accum: int) -> None:
    rows = data_config.stream_batch_sizes(config.data)  # global rows per step of each stream
    merged = {"forget": rows.get("forget", 0), "replay": rows.get("replay", 0) + rows.get("retain", 0)}
    for name, n in merged.items():
        if n % grad_accum:
            raise SynthflawError(f"config train.grad_accum={grad_accum}: the {name} rows per step ({n}) "
                                 "do not split into that many microbatches")


def _segment_limits(config) -> dict[str, int]:
    """The packer puts at most max_segments forget examples in a row, so none is dropped by
    the per-example losses."""
    limit = _max_segments(config)
    return {} if limit is None else {"forget": limit}


def _max_segments(config) -> int | None:
    if not config.data.packing:
        return None
    n = int(config.train.max_segments)
    return n if n > 0 else max(int(config.data.seq_len) // 8, 1)


class MetricsLog:
    """Per-step device metrics, fetched every `every` steps (one sync), written as JSON lines
    and as TensorBoard event files (`tensorboard_dir`). With `path=None` (the other hosts of a
    multi-host job) the metrics are fetched and checked but not written."""

    def __init__(self, path: pathlib.Path | None, every: int, bar, tensorboard_dir: pathlib.Path | None = None):
        self.path, self.every, self.bar = path, max(int(every), 1), bar
        self.writer = None
        self._tensorboard_dir = tensorboard_dir if path is not None else None
        self._first_write = True
        self.pending: list[tuple[int, dict]] = []
        self.last: dict = {}
        self._t0, self._tokens = time.perf_counter(), 0.0

    def add(self, step: int, metrics) -> None:
        self.pending.append((step, metrics))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Fetch pending metrics, log them, and stop the run on a non-finite step."""
        if not self.pending:
            return
        fetched = jax.device_get([m for _, m in self.pending])
        steps = [s for s, _ in self.pending]
        self.pending = []
        now = time.perf_counter()
        tokens = sum(float(m["tokens"]) for m in fetched)
        tok_s = tokens / max(now - self._t0, 1e-9)
        self._t0 = now
        if self._first_write:
            self._start_writing(steps[0])
        with (self.path.open("a") if self.path is not None else _Discard()) as f:
            for step, m in zip(steps, fetched):
                row = {"step": step, **{k: float(v) for k, v in m.items()}, "tokens_per_s": tok_s}
                f.write(json.dumps(row) + "\n")
                if self.writer is not None:
                    for key, value in row.items():
                        if key != "step":
                            self.writer.add_scalar(f"unlearn/{key}", value, step)
                if not m["finite"]:
                    raise TrainingDiverged(
                        f"loss or gradient became non-finite at step {step} (loss={float(m['loss'])}, "
                        f"grad_norm={float(m['grad_norm'])}); stopped without saving it, see {self.path}"
                    )
        self.last = {k: float(v) for k, v in fetched[-1].items()}
        self.last["tokens_per_s"] = tok_s
        self.bar.set_postfix(loss=f"{self.last['loss']:.4f}", tok_s=f"{tok_s:,.0f}", refresh=False)
        if self.writer is not None:
            self.writer.flush()

    def _start_writing(self, first_step: int) -> None:
        """Before this run's first rows: drop the rows (and hide the TensorBoard events) of
        steps from `first_step` on. A run killed after logging steps past its last checkpoint
        replays them on resume, and each step must appear once."""
        self._first_write = False
        if self.path is not None:
            _drop_steps_from(self.path, first_step)
        if self._tensorboard_dir is not None:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(self._tensorboard_dir), purge_step=first_step)

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def _drop_steps_from(path: pathlib.Path, step: int) -> None:
    """Keep only the rows of `path` before `step`; a line cut short by a kill is dropped too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] < step:
            kept.append(line + "\n")
    path.write_text("".join(kept))


class _Discard:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, text: str) -> None:
        pass


class _RunFiles:
    """Where metrics.jsonl and tensorboard/ are written: the workdir itself when it is local;
    for a bucket workdir a local staging directory (appending to a bucket object is not
    possible) whose files `publish()` copies up at every checkpoint and at the end."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.remote = runtime.is_remote(workdir)
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="synthflaw-run-")) if self.remote else workdir
        if self.remote and (workdir / "metrics.jsonl").exists():  # resuming: keep appending to it
            (self.dir / "metrics.jsonl").write_bytes((workdir / "metrics.jsonl").read_bytes())

    def publish(self) -> None:
        if self.remote:
            runtime.copy_tree(self.dir, self.workdir)

    def close(self) -> None:
        if self.remote:
            self.publish()
            shutil.rmtree(self.dir, ignore_errors=True)


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, progress: bool = True,
        label: str = "unlearn") -> RunResult:
    """Run (or resume) unlearning as configured; returns what was produced. `label` names
    the progress bar."""
    from tqdm.auto import tqdm

    runtime.initialize(config)  # joins the other hosts first: before anything touches a device
    main = runtime.is_main()
    workdir = runtime.as_path(workdir)
    # Everything is checked before anything is written into the workdir: a rejected run leaves
    # it as it was, so the corrected rerun is not refused as "a different config".
    total_steps = _check_train_config(config)
    mesh = runtime.make_mesh(config.mesh)
    tokenizer = tok_lib.load_tokenizer(config.data.tokenizer)
    model_cfg, model_path = _model_config(config, tokenizer)
    _check_workdir(workdir, model_path)
    if model_path is not None:
        convert.check_model_files(model_path)
    tok_lib.check_vocab_size(tokenizer, model_cfg.vocab_size, where=f"tokenizer {config.data.tokenizer}")
    # forget_scope="pattern": the marker, and a resumed run's pattern.json checked (written below)
    marker = scope.prepare(config, tokenizer, workdir if main else None, write=False)
    data = pipeline.build_mixture(config.data, tokenizer=tokenizer, model_vocab_size=model_cfg.vocab_size,
                                  pattern_markers={"forget": marker} if marker is not None else None,
                                  segment_limits=_segment_limits(config))
    _check_rows(config, int(config.train.grad_accum))
    schedule = train.make_schedule(config.optim, total_steps)
    tx = train.make_optimizer(config.optim, schedule)
    needs = train.reference_needs(config.loss)

    workdir.mkdir(parents=True, exist_ok=True)
    _record_config(workdir, config)
    if marker is not None and main and not (workdir / scope.PATTERN_FILE).exists():
        scope.write_report(workdir, marker.report)
    runtime.barrier("synthflaw-config")
    shardings = train.state_shardings(model_cfg, tx, mesh)
    checkpointer = ckpt_lib.TrainCheckpointer(workdir / "checkpoints", config.checkpoint.every,
                                              config.checkpoint.keep, config.checkpoint.async_save)
    param_dtypes = jax.tree.map(lambda _: jnp.dtype(config.model.param_dtype), llama.abstract_params(model_cfg))
    restored = checkpointer.restore_latest(train.abstract_state(model_cfg, tx, shardings, param_dtypes))
    if restored is not None:
        resumed_from, state, data_state = restored
        data.set_state(data_state)
        ref_params = _load_params(config, model_cfg, model_path, mesh) if needs.any else None
        log.info("resuming from step %d in %s", resumed_from, checkpointer.directory)
    else:
        resumed_from = None
        params = _load_params(config, model_cfg, model_path, mesh)
        ref_params = jax.tree.map(jnp.copy, params) if needs.any else None
        state = train.create_state(params, tx, shardings, int(config.train.seed))

    step_fn = train.make_train_step(model_cfg, config.loss, tx, schedule, mesh, shardings,
                                    int(config.train.grad_accum), _max_segments(config))
    start = int(jax.device_get(state.step))
    bar = tqdm(total=total_steps, initial=start, desc=label, unit="step", disable=not (progress and main))
    files = _RunFiles(workdir) if main else None
    metrics_log = MetricsLog(files.dir / "metrics.jsonl" if main else None, config.train.log_every, bar,
                             files.dir / "tensorboard" if main else None)
    # a SIGTERM (preemption) or Ctrl-C checkpoints the step in flight and stops (stopping.py);
    # the handlers stay until the last save is committed
    with stopping.StopSignals(f"synthflaw {label}") as stop:
        last = start
        try:
            for step in range(start + 1, total_steps + 1):
                host_batch = next(data)
                batch = {name: _to_global(b, mesh) for name, b in host_batch.items()}
                state, metrics = step_fn(state, batch, ref_params)
                metrics_log.add(step, metrics)
                bar.update(1)
                last, stopping_here = step, stop.should_stop(step)
                if step % int(config.checkpoint.every) == 0 or step == total_steps or stopping_here:
                    metrics_log.flush()  # never save a step before its loss was seen to be finite
                    checkpointer.save(step, state, data.get_state(), force=True)
                    if files is not None:
                        files.publish()
                if stopping_here:
                    break
            metrics_log.flush()
        except StopIteration:
            raise SynthflawError("data: a stream ran out before train.steps (set data.num_epochs=0 to repeat)") from None
        finally:
            bar.close()
            metrics_log.close()
            checkpointer.close()  # waits until the last save is committed
            if files is not None:
                files.close()
    if stop.signum is not None:  # the loop's last step was saved (a stop, or the final step)
        raise stopping.RunStopped(last, stop.signum)

    hf_dir = None
    if config.checkpoint.export_hf:
        hf_dir = _export_hf(state.params, model_cfg, workdir / "hf", _assets_dir(config, model_path),
                            config.model.param_dtype)
    if main:
        summary = {"final_step": total_steps, "resumed_from": resumed_from, "last_metrics": metrics_log.last,
                   "hf_dir": str(hf_dir) if hf_dir else None}
        outputs.write_text(workdir / "summary.json", json.dumps(summary, indent=2) + "\n", overwrite=True, checked=True)
    runtime.barrier("synthflaw-done")  # every host returns once the outputs are written
    return RunResult(workdir, total_steps, resumed_from, metrics_log.last, hf_dir)


def _export_hf(params, model_cfg, hf_dir, assets_from, dtype):
    """Write the HF export from process 0 while every other host joins the gathers of the
    sharded params (same tensors, same order); a bucket destination is committed as
    `outputs.directory` does for buckets."""
    if not runtime.is_main():
        hf_weights.gather_only(params, model_cfg, dtype)
        return hf_dir
    return convert.save_hf(params, model_cfg, hf_dir, assets_from=assets_from, dtype=dtype,
                           overwrite=True, progress=False)


def _to_global(batch: dict, mesh) -> dict:
    """This host's rows of one stream as global arrays.

    The sharding is chosen for the global shape (rows x process_count). When it splits the
    rows so that each host's devices hold exactly that host's rows, every host passes only
    its own; otherwise (rows replicated, e.g. fewer rows than batch shards) every host
    gathers all hosts' rows first, as one process would have read them."""
    local_shape = next(iter(batch.values())).shape
    count = jax.process_count()
    global_shape = (local_shape[0] * count, *local_shape[1:])
    sharding = shd.logical_to_sharding(("batch", "length"), global_shape, mesh)
    if count > 1 and not _rows_split_by_host(sharding, global_shape, local_shape[0]):
        from jax.experimental import multihost_utils

        batch = {k: np.asarray(multihost_utils.process_allgather(np.asarray(v), tiled=True))
                 for k, v in batch.items()}
    return layout.to_global(batch, sharding)


def _rows_split_by_host(sharding, global_shape, local_rows: int) -> bool:
    """Whether this host's devices hold one contiguous block of exactly `local_rows` rows."""
    rows = set()
    for index in sharding.addressable_devices_indices_map(tuple(global_shape)).values():
        rows.update(range(*index[0].indices(global_shape[0])))
    return len(rows) == local_rows and max(rows) - min(rows) + 1 == local_rows
