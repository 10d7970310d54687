"""Reading JSONL files of objects, with errors that name the file and the 1-based line."""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Iterator

from synthflaw_jax.errors import SynthflawError


def read_lines(path: str | os.PathLike) -> list[str]:
    """The file's lines as UTF-8 text; unreadable files raise SynthflawError naming `path`
    (a bucket path is downloaded first)."""
    from synthflaw_jax import runtime

    path = runtime.local_input(path)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise SynthflawError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise SynthflawError(f"{path}: is a directory, expected a JSONL file") from None
    except UnicodeDecodeError as err:
        raise SynthflawError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise SynthflawError(f"{path}: cannot read ({err.strerror or err})") from None


def parse_objects(path: str | os.PathLike, lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of `path`; every line must be a JSON object."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise SynthflawError(f"{path}:{n}: bad JSON ({err.msg}, column {err.colno})") from None
        if not isinstance(obj, dict):
            raise SynthflawError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        yield n, obj


def iter_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of the JSONL file `path`."""
    return parse_objects(path, read_lines(path))
