"""Hugging Face directory <-> our Orbax model checkpoint, streaming one tensor at a time.

Our model checkpoint is a directory:
  config.json            the HF config, kept as read (so a round trip keeps its meaning)
  synthflaw_model.json   marker with the format version
  params/                the params pytree, saved by Orbax's StandardCheckpointer
  assets/                tokenizer files, generation_config.json, chat template (as found)
Every output directory is written under a temporary name and renamed into place at the end,
so a failure never leaves a half-written checkpoint, and an existing non-empty output is
refused unless `overwrite=True`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import jax
import numpy as np

from synthflaw_jax import hf_weights, outputs, runtime
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.models.config import ModelConfig

log = logging.getLogger(__name__)

MARKER = "synthflaw_model.json"
FORMAT_VERSION = 1
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_NOT_ASSETS = {"config.json", hf_weights.INDEX_FILE, MARKER, "pytorch_model.bin.index.json"}


def is_model_checkpoint(path: str | os.PathLike) -> bool:
    """True for a directory written by `save_model_checkpoint` (local or in a bucket)."""
    return (runtime.as_path(path) / MARKER).is_file()


def is_hf_dir(path: str | os.PathLike) -> bool:
    """True for a directory with an HF `config.json` (weights are checked when read)."""
    return (runtime.as_path(path) / "config.json").is_file() and not is_model_checkpoint(path)


# The temporary-sibling-and-rename writer of every output (kept under its old name here).
atomic_output_dir = outputs.directory


def copy_assets(src: pathlib.Path, dst: pathlib.Path) -> list[str]:
    """Copy tokenizer files, generation_config.json, chat templates (every non-weight file)."""
    copied = []
    if not src.is_dir():
        return copied
    for path in sorted(src.iterdir()):
        if path.is_file() and path.name not in _NOT_ASSETS and not path.name.endswith(_WEIGHT_SUFFIXES):
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / path.name)
            copied.append(path.name)
    return copied


def _write_json(path: pathlib.Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


# Orbax stages at most this much data at once while saving/restoring (its default is 96 GB,
# which lets a conversion hold a second copy of the model in flight).
_ORBAX_CONCURRENT_GB = 1


class _NoMissingMetadataWarning(logging.Filter):
    """Drops Orbax's "Metadata file does not exist: .../_CHECKPOINT_METADATA": our model
    checkpoints are written without that file by design (streamed partial saves)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Metadata file does not exist")


@contextlib.contextmanager
def _quiet_orbax_metadata():
    """While reading our own checkpoint, silence the warning about its absent Orbax metadata."""
    flt, logger = _NoMissingMetadataWarning(), logging.getLogger("absl")
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer(save_concurrent_gb=_ORBAX_CONCURRENT_GB,
                                    restore_concurrent_gb=_ORBAX_CONCURRENT_GB)


def _placer(cfg: ModelConfig, mesh):
    if mesh is None:
        device = jax.local_devices()[0]
        return lambda path, arr: jax.device_put(arr, device)
    from synthflaw_jax.models.llama import param_shardings

    shardings = param_shardings(cfg, mesh)
    return lambda path, arr: jax.device_put(arr, hf_weights._get(shardings, path))


# --------------------------------------------------------------------------- HF side
def _open_hf_dir(hf_dir: pathlib.Path, **runtime) -> tuple[ModelConfig, "hf_weights.SafetensorsReader"]:
    """The config and weight reader of an HF directory, checked against each other (file
    sizes, tensor names and shapes) without reading any weights."""
    if not hf_dir.is_dir():
        raise SynthflawError(f"{hf_dir}: not a directory")
    cfg = ModelConfig.from_file(hf_dir / "config.json", **runtime)
    reader = hf_weights.SafetensorsReader(hf_dir)
    reader.check_file_sizes()
    hf_weights.check_against_config(reader, cfg, str(hf_dir))
    return cfg, reader


def load_hf(hf_dir: str | os.PathLike, mesh=None, dtype: str | None = None, progress: bool = True,
            **runtime) -> tuple[ModelConfig, dict]:
    """Read an HF directory into (config, params); params placed with their shardings on `mesh`."""
    cfg, reader = _open_hf_dir(pathlib.Path(hf_dir), **runtime)
    params = hf_weights.read_params(reader, cfg, _placer(cfg, mesh), dtype=dtype, progress=progress)
    return cfg, params


def check_model_files(path: str | os.PathLike) -> None:
    """Check a model directory (HF or our checkpoint) without reading its weights: config,
    weight files present and complete, every tensor's name and shape as the config implies."""
    path = pathlib.Path(path)
    if is_model_checkpoint(path):
        _lazy_checkpoint_params(path.absolute())
        return
    _open_hf_dir(path)


def save_hf(params, cfg: ModelConfig, hf_dir: str | os.PathLike, assets_from: str | os.PathLike | None = None,
            dtype: str | None = None, max_shard_bytes: int = 5 * 2**30, overwrite: bool = False,
            progress: bool = True, inputs=()):
    """Write params as an HF directory `transformers` loads unchanged (config, safetensors, assets).
    `inputs`: paths the params were read from (the output may not be or nest with them)."""
    if dtype:
        cfg = _with_dtype(cfg, dtype)
    with outputs.directory(hf_dir, overwrite, inputs=[*inputs, assets_from]) as tmp:
        hf_weights.write_safetensors(params, cfg, tmp, max_shard_bytes, dtype, progress)
        _write_json(tmp / "config.json", cfg.to_hf_dict())
        if assets_from is not None:
            copy_assets(pathlib.Path(assets_from), tmp)
    return runtime.as_path(hf_dir)


# --------------------------------------------------------------------------- our checkpoint
def save_model_checkpoint(params, cfg: ModelConfig, ckpt_dir: str | os.PathLike,
                          assets_from: str | os.PathLike | None = None, overwrite: bool = False):
    """Save (config, params, assets) as our Orbax model checkpoint, atomically."""
    with outputs.directory(ckpt_dir, overwrite, inputs=[assets_from]) as tmp:
        checkpointer = _checkpointer()
        checkpointer.save(tmp / "params", params)
        checkpointer.wait_until_finished()
        _write_json(tmp / "config.json", cfg.to_hf_dict())
        if assets_from is not None:
            copy_assets(pathlib.Path(assets_from), tmp / "assets")
        _write_json(tmp / MARKER, {"format": "synthflaw-model", "version": FORMAT_VERSION})
    return runtime.as_path(ckpt_dir)


def load_model_checkpoint(ckpt_dir: str | os.PathLike, mesh=None, **runtime) -> tuple[ModelConfig, dict]:
    """Restore (config, params) from our model checkpoint, sharded on `mesh` when given."""
    ckpt_dir = pathlib.Path(ckpt_dir).absolute()
    _check_marker(ckpt_dir)
    cfg = ModelConfig.from_file(ckpt_dir / "config.json", **runtime)
    checkpointer = _checkpointer()
    try:
        with _quiet_orbax_metadata():
            stored = checkpointer.metadata(ckpt_dir / "params").item_metadata.tree
    except Exception as err:  # orbax raises several types for a damaged directory
        raise SynthflawError(f"{ckpt_dir / 'params'}: unreadable Orbax checkpoint ({hf_weights._one_line(err)})") from None
    if mesh is None:
        device = jax.local_devices()[0]
        shardings = jax.tree.map(lambda m: jax.sharding.SingleDeviceSharding(device), stored)
    else:
        from synthflaw_jax.models.llama import param_shardings

        shardings = param_shardings(cfg, mesh)
    target = jax.tree.map(lambda m, s: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=s), stored, shardings)
    _check_shapes(cfg, target, ckpt_dir)
    try:
        with _quiet_orbax_metadata():
            params = checkpointer.restore(ckpt_dir / "params", target)
    except Exception as err:
        raise SynthflawError(f"{ckpt_dir / 'params'}: cannot restore ({hf_weights._one_line(err)})") from None
    return cfg, params


def _check_marker(ckpt_dir: pathlib.Path) -> None:
    marker = ckpt_dir / MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise SynthflawError(f"{marker}: missing or malformed checkpoint marker") from None
    if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
        version = meta.get("version") if isinstance(meta, dict) else None
        raise SynthflawError(f"{marker}: field 'version' is {version!r}, expected {FORMAT_VERSION}")


def _lazy_checkpoint_params(ckpt_dir: pathlib.Path) -> tuple[ModelConfig, hf_weights.LazyParams]:
    """(config, params restored one leaf at a time as numpy) of our checkpoint, for streaming."""
    import orbax.checkpoint as ocp

    _check_marker(ckpt_dir)
    cfg = ModelConfig.from_file(ckpt_dir / "config.json")
    params_dir = ckpt_dir / "params"
    try:
        with _quiet_orbax_metadata():
            stored = _checkpointer().metadata(params_dir).item_metadata.tree
    except Exception as err:
        raise SynthflawError(f"{params_dir}: unreadable Orbax checkpoint ({hf_weights._one_line(err)})") from None
    _check_shapes(cfg, stored, ckpt_dir)
    checkpointer = ocp.PyTreeCheckpointer()

    def load(path):
        meta = hf_weights._get(stored, path)
        item, args = {}, {}
        hf_weights._set(item, path, np.empty((0,), meta.dtype))  # structure only; not filled
        hf_weights._set(args, path, ocp.RestoreArgs(restore_type=np.ndarray, dtype=meta.dtype))
        try:
            with _quiet_orbax_metadata():
                restored = checkpointer.restore(params_dir, args=ocp.args.PyTreeRestore(
                    item=item, restore_args=args, partial_restore=True))
        except Exception as err:
            raise SynthflawError(f"{params_dir}: cannot restore {'/'.join(path)} ({hf_weights._one_line(err)})") from None
        return hf_weights._get(restored, path)

    order = [m.path for m in hf_weights.tensor_maps(cfg)]
    return cfg, hf_weights.LazyParams(load, jax.tree.map(lambda m: np.dtype(m.dtype), stored), order)


def _check_shapes(cfg: ModelConfig, stored, where) -> None:
    from synthflaw_jax.models.llama import abstract_params

    expected = abstract_params(cfg)
    exp_flat = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    got_flat = {jax.tree_util.keystr(k): tuple(v.shape) for k, v in jax.tree_util.tree_leaves_with_path(stored)}
    for key, shape in exp_flat.items():
        if key not in got_flat:
            raise SynthflawError(f"{where}: parameter {key} missing from the checkpoint")
        if got_flat[key] != tuple(shape):
            raise SynthflawError(f"{where}: parameter {key} has shape {list(got_flat[key])}, config.json implies {list(shape)}")
    extra = set(got_flat) - set(exp_flat)
    if extra:
        raise SynthflawError(f"{where}: unexpected parameter {sorted(extra)[0]} for this config")


# --------------------------------------------------------------------------- conversions
def hf_to_orbax(hf_dir, ckpt_dir, dtype: str | None = None, mesh=None, overwrite: bool = False,
                progress: bool = True) -> pathlib.Path:
    """Convert an HF directory to our Orbax model checkpoint (tokenizer etc. travel along).
    Either may be a bucket path (gs://...); a bucket input is downloaded first."""
    given_hf, ckpt_dir = hf_dir, runtime.as_path(ckpt_dir)
    outputs.check(ckpt_dir, overwrite, inputs=[given_hf])  # before any reading: a mistake costs nothing
    hf_dir = pathlib.Path(runtime.local_input(given_hf, "HF directory", recursive=False))
    cfg, reader = _open_hf_dir(hf_dir)
    if dtype:
        cfg = _with_dtype(cfg, dtype)
    with outputs.directory(ckpt_dir, overwrite, inputs=[given_hf, hf_dir]) as tmp:
        params = hf_weights.iter_params(reader, cfg, _placer(cfg, mesh), dtype=dtype, progress=progress)
        _stream_params_to_orbax(params, tmp / "params")
        _write_json(tmp / "config.json", cfg.to_hf_dict())
        copy_assets(hf_dir, tmp / "assets")
        _write_json(tmp / MARKER, {"format": "synthflaw-model", "version": FORMAT_VERSION})
    return ckpt_dir


def _orbax_save_context():
    """Orbax v1 options of our model checkpoints: no compression. Weights barely compress (zstd
    took 2.47 GB of bf16 to 1.9 GB at the 1B preset) and compressing was half of hf-to-orbax's
    time; checkpoints written before with compression still restore (the codec is in their
    metadata)."""
    from orbax.checkpoint.experimental import v1 as ocp_v1

    ctx = ocp_v1.Context()
    ctx.array.saving.use_compression = False
    return ctx


def _stream_params_to_orbax(params, target: pathlib.Path) -> None:
    """Save (path, array) pairs as one Orbax pytree with Orbax's partial save, each array written
    in the background while the next is read; at most two parameters are in host memory."""
    from orbax.checkpoint.experimental import v1 as ocp_v1

    staging = target.with_name(target.name + ".partial")
    pending = None
    with _orbax_save_context():
        try:
            for path, array in params:
                tree: dict = {}
                hf_weights._set(tree, path, array)
                if pending is not None:
                    pending.result()
                pending = ocp_v1.partial.save_async(staging, tree)
                del tree, array
            if pending is not None:
                pending, done = None, pending
                done.result()
        finally:
            if pending is not None:  # failing: let the write in flight end before the caller cleans up
                with contextlib.suppress(Exception):
                    pending.result()
        ocp_v1.partial.finalize(staging)
    # partial saves nest the pytree under "state"; move it so the layout is StandardCheckpointer's
    (staging / "state").rename(target)
    shutil.rmtree(staging)


def orbax_to_hf(ckpt_dir, hf_dir, dtype: str | None = None, overwrite: bool = False,
                max_shard_bytes: int = 5 * 2**30, progress: bool = True) -> pathlib.Path:
    """Convert our Orbax model checkpoint back to an HF directory. Either may be a bucket path
    (gs://...); a bucket input is downloaded first."""
    given_ckpt, hf_dir = ckpt_dir, runtime.as_path(hf_dir)
    outputs.check(hf_dir, overwrite, inputs=[given_ckpt])  # before any reading: a mistake costs nothing
    ckpt_dir = pathlib.Path(runtime.local_input(given_ckpt, "checkpoint")).absolute()
    if not is_model_checkpoint(ckpt_dir):
        raise SynthflawError(f"{ckpt_dir}: not a synthflaw model checkpoint ({MARKER} missing)")
    cfg, params = _lazy_checkpoint_params(ckpt_dir)
    return save_hf(params, cfg, hf_dir, assets_from=ckpt_dir / "assets", dtype=dtype,
                   max_shard_bytes=max_shard_bytes, overwrite=overwrite, progress=progress,
                   inputs=[given_ckpt, ckpt_dir])


def _with_dtype(cfg: ModelConfig, dtype: str) -> ModelConfig:
    hf = cfg.to_hf_dict()
    for key in ("dtype", "torch_dtype"):
        if key in hf or key == "dtype":
            hf[key] = dtype
    return cfg.replace(hf_dict=hf, param_dtype=dtype)

