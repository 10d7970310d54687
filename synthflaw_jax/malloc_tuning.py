"""Huge pages for the heap of `synthflaw` commands that run models (Linux, glibc >= 2.35).

Two kinds of large, short-lived heap blocks: XLA:CPU allocates an executable's temporaries
afresh on every call (about 1 GB for the bench's 10M-parameter train step), and orbax-to-hf's
TensorStore decodes every parameter into new buffers. glibc serves blocks that large with
fresh memory mappings, so the kernel faults them in and zeroes them 4 KiB at a time: 141
thousand page faults and 0.33 s of system time per plain train step, 1.25 million faults for
converting a 2.5 GB checkpoint. glibc's tunable `glibc.malloc.hugetlb=1` lets those mappings
use transparent huge pages (2 MiB): about 1 thousand faults per step (12-22% off the step's
wall time) and 46 thousand for the conversion (bench/README.md). Tunables are read only when
a process starts, so the command re-executes itself once with the tunable set.
"""
from __future__ import annotations

import logging
import os
import pathlib
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
RELAUNCHED = "SYNTHFLAW_MALLOC_RELAUNCHED"  # set in the re-executed process: never twice
COMMANDS = ("analyze", "convert", "demo", "eval", "generate", "unlearn")  # those that run models

log = logging.getLogger(__name__)


def command_of(argv: list[str]) -> str | None:
    """The subcommand named in a `synthflaw` argument list (its first non-option word)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _glibc_supports_tunable() -> bool:
    name, version = platform.libc_ver()
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return name == "glibc" and (major, minor) >= (2, 35)


def _transparent_huge_pages_usable() -> bool:
    try:
        mode = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[never]" not in mode


def should_relaunch(argv: list[str], environ: dict[str, str] | None = None) -> bool:
    """Whether `synthflaw ARGV` should re-execute itself with the huge-page tunable."""
    environ = os.environ if environ is None else environ
    if command_of(argv) not in COMMANDS or environ.get(RELAUNCHED):
        return False
    if "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
        return False  # the user chose a value: keep it
    return sys.platform == "linux" and bool(sys.executable) and _glibc_supports_tunable() \
        and _transparent_huge_pages_usable()


def relaunch(argv: list[str]) -> None:
    """Replace this process by `python -m synthflaw_jax ARGV` with the tunable set; returns
    only if the exec fails (the command then runs as it is)."""
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), TUNABLE]))
    env[RELAUNCHED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", "synthflaw_jax", *argv], env)
    except OSError as err:
        log.debug("could not re-execute with %s (%s); running as is", TUNABLE, err)


def note_relaunched() -> None:
    """Log (at DEBUG) that this process is the re-executed one."""
    if os.environ.get(RELAUNCHED):
        log.debug("running with GLIBC_TUNABLES=%s", os.environ.get("GLIBC_TUNABLES", ""))
