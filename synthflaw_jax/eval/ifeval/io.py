"""Reading the published IFEval formats and writing results atomically.

Prompts: JSONL `{"key", "prompt", "instruction_id_list", "kwargs"}`; responses: JSONL
`{"prompt", "response"}`, matched to prompts by exact prompt string (as the reference
does). Every problem raises SynthflawError naming the file and the 1-based line.
"""
from __future__ import annotations

import importlib.resources
import json
import logging
import os
import pathlib
import uuid
from typing import Any, Sequence

from synthflaw_jax import jsonl
from synthflaw_jax.errors import SynthflawError
from synthflaw_jax.eval.ifeval.registry import InstructionArgsError, validate
from synthflaw_jax.eval.ifeval.scoring import PromptRecord

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


def default_prompts_path() -> pathlib.Path:
    """The small prompt set of our own that ships with the package."""
    res = importlib.resources.files("synthflaw_jax") / "resources" / "ifeval" / "default_prompts.jsonl"
    return pathlib.Path(str(res))


def _field(path: PathLike, n: int, obj: dict[str, Any], name: str, types: tuple, what: str):
    if name not in obj:
        raise SynthflawError(f"{path}:{n}: missing field '{name}'")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, types):
        raise SynthflawError(
            f"{path}:{n}: field '{name}' must be {what}, got {type(value).__name__}"
        )
    return value


def load_prompts(path: PathLike) -> list[PromptRecord]:
    """Read and validate an IFEval prompt file (ids known, kwargs fitting each instruction)."""
    records = []
    for n, obj in jsonl.iter_objects(path):
        key = _field(path, n, obj, "key", (int, str), "an integer or a string")
        prompt = _field(path, n, obj, "prompt", (str,), "a string")
        ids = _field(path, n, obj, "instruction_id_list", (list,), "a list of instruction ids")
        kwargs = _field(path, n, obj, "kwargs", (list,), "a list of objects")
        if not ids:
            raise SynthflawError(f"{path}:{n}: field 'instruction_id_list' is empty")
        if len(kwargs) != len(ids):
            raise SynthflawError(
                f"{path}:{n}: 'kwargs' has {len(kwargs)} entries but "
                f"'instruction_id_list' has {len(ids)}"
            )
        args = []
        for i, (iid, kw) in enumerate(zip(ids, kwargs)):
            if not isinstance(iid, str):
                raise SynthflawError(
                    f"{path}:{n}: instruction_id_list[{i}] must be a string, got {iid!r}"
                )
            try:
                args.append(validate(iid, kw, prompt))
            except InstructionArgsError as err:
                raise SynthflawError(f"{path}:{n}: kwargs[{i}]: {err}") from None
        records.append(PromptRecord(key, prompt, tuple(ids), tuple(args), line=n))
    if not records:
        raise SynthflawError(f"{path}: no prompts in the file")
    return records


def load_responses(path: PathLike) -> dict[str, str]:
    """prompt -> response from a response file (a null response counts as empty)."""
    responses: dict[str, str] = {}
    for n, obj in jsonl.iter_objects(path):
        prompt = _field(path, n, obj, "prompt", (str,), "a string")
        if "response" not in obj:
            raise SynthflawError(f"{path}:{n}: missing field 'response'")
        response = obj["response"]
        if response is None:
            response = ""
        if not isinstance(response, str):
            raise SynthflawError(
                f"{path}:{n}: field 'response' must be a string, "
                f"got {type(response).__name__}"
            )
        if prompt in responses and responses[prompt] != response:
            log.warning("%s line %d: a second, different response to one prompt; using it", path, n)
        responses[prompt] = response
    return responses


def match_responses(
    records: Sequence[PromptRecord], responses: dict[str, str], responses_path: PathLike
) -> list[str]:
    """The response to each prompt, in prompt order; every prompt must have one."""
    missing = [r for r in records if r.prompt not in responses]
    if missing:
        first = missing[0]
        snippet = " ".join(first.prompt.split())[:80]
        raise SynthflawError(
            f"{responses_path}: does not match the prompts: {len(missing)} of {len(records)} "
            f"prompts have no response (matched by exact prompt text); first missing: "
            f"key {first.key} (prompts line {first.line}): \"{snippet}\""
        )
    extra = len(set(responses) - {r.prompt for r in records})
    if extra:
        log.warning("%s: %d responses match no prompt and are ignored", responses_path, extra)
    return [responses[r.prompt] for r in records]


def check_out_dir(out: PathLike, overwrite: bool) -> pathlib.Path:
    """Refuse an `out` that is a file, or a non-empty directory unless `overwrite`
    (`synthflaw_jax.outputs.check`, which also refuses a path under a regular file)."""
    from synthflaw_jax import outputs

    return outputs.check(out, overwrite, what="--out")


def write_atomic(path: PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: PathLike, records: Sequence[dict[str, Any]]) -> None:
    """Write one JSON object a line, atomically."""
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
