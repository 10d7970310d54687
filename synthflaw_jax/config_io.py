"""Config files (Python files with `get_config()` returning an ml_collections.ConfigDict) and
`--config.key=value` overrides, the ml_collections override syntax, with one-line errors."""
from __future__ import annotations

import ast
import importlib.util
import json
import pathlib
from typing import Sequence

import ml_collections

from synthflaw_jax.errors import SynthflawError


def load_config_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Execute a config file (local or in a bucket) and return its `get_config()`."""
    from synthflaw_jax import runtime

    path = pathlib.Path(runtime.local_input(path, "config"))
    if not path.is_file():
        raise SynthflawError(f"{path}: config file not found")
    spec = importlib.util.spec_from_file_location(f"synthflaw_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SynthflawError:
        raise
    except Exception as err:
        raise SynthflawError(f"{path}: cannot execute config file ({type(err).__name__}: {err})") from None
    if not hasattr(module, "get_config"):
        raise SynthflawError(f"{path}: config file defines no get_config()")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise SynthflawError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return config


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
    """Apply `--config.a.b=value` strings (values parsed as Python literals, else strings)."""
    for item in overrides:
        if not item.startswith("--config.") or "=" not in item:
            raise SynthflawError(f"override {item!r}: expected --config.<field>=<value>")
        key, raw = item[len("--config."):].split("=", 1)
        parts = key.split(".")
        node = config
        for i, part in enumerate(parts[:-1]):
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise SynthflawError(f"override {item!r}: config has no section {'.'.join(parts[:i + 1])!r}")
            node = node[part]
        leaf = parts[-1]
        if leaf not in node:
            raise SynthflawError(f"override {item!r}: config has no field {key!r}")
        value = _parse_value(raw)
        current = node[leaf]
        if isinstance(current, str) and not isinstance(value, str):
            value = raw  # a string field keeps the text as typed ("1e-3" stays a string)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        try:
            node[leaf] = value
        except (TypeError, ValueError) as err:
            raise SynthflawError(f"override {item!r}: {' '.join(str(err).split())}") from None
    return config


def to_json(config: ml_collections.ConfigDict) -> str:
    """The resolved config as stable JSON (what the workdir records)."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
