"""glibc heap settings for the `synthflaw` commands that run models (Linux, glibc >= 2.35).

Two kinds of large, short-lived heap blocks: XLA:CPU allocates an executable's temporaries
afresh on every call (about 1 GB for the bench's 10M-parameter train step), and orbax-to-hf's
TensorStore decodes every parameter into new buffers. glibc serves blocks that large with
fresh memory mappings, so the kernel faults them in and zeroes them 4 KiB at a time: 141
thousand page faults and 0.33 s of system time per plain train step, 1.25 million faults for
converting a 2.5 GB checkpoint. glibc's tunable `glibc.malloc.hugetlb=1` lets those mappings
use transparent huge pages (2 MiB): about 1 thousand faults per step (12-22% off the step's
wall time) and 46 thousand for the conversion (bench/README.md). Tunables are read only when
a process starts, so the command re-executes itself once with the tunable set.

Huge pages cut the faults, not the clearing: every fresh mapping is still zeroed by the kernel,
and on a VM that hands freed memory back to its host (Firecracker reports free pages after
about two seconds) touching it again costs far more. The commands that run steps over and over
(`analyze demo eval generate unlearn`) therefore also keep freed memory in glibc's heap: no
mmap for large blocks, no trimming, one arena (an XLA thread's own arena cannot hold a 1 GB
block and would map it anyway). The same temporaries then serve every step: no page faults
per step at all, and the paper's step after an 8-second pause cost 2.3-2.5 s instead of
3.1-3.3 s (bench/README.md). `convert` keeps huge pages only: its blocks change size
parameter by parameter, and a heap that only grows measured slower there.
"""
from __future__ import annotations

import logging
import os
import pathlib
import platform
import sys

HUGE_PAGES = ("glibc.malloc.hugetlb=1",)
KEEP_FREED = ("glibc.malloc.mmap_max=0", "glibc.malloc.trim_threshold=4294967296", "glibc.malloc.arena_max=1")
RELAUNCHED = "SYNTHFLAW_MALLOC_RELAUNCHED"  # set in the re-executed process: never twice
COMMANDS = ("analyze", "convert", "demo", "eval", "generate", "unlearn")  # those that run models

log = logging.getLogger(__name__)


def command_of(argv: list[str]) -> str | None:
    """The subcommand named in a `synthflaw` argument list (its first non-option word)."""
    return next((a for a in argv if not a.startswith("-")), None)


def tunables_for(command: str | None) -> tuple[str, ...]:
    """The glibc tunables ("name=value") `synthflaw COMMAND` runs with; none for other commands."""
    if command not in COMMANDS:
        return ()
    return HUGE_PAGES if command == "convert" else HUGE_PAGES + KEEP_FREED


def _missing(tunables: tuple[str, ...], environ) -> list[str]:
    """Those of `tunables` whose name the user's GLIBC_TUNABLES does not set already."""
    chosen = {item.split("=", 1)[0] for item in environ.get("GLIBC_TUNABLES", "").split(":") if item}
    return [t for t in tunables if t.split("=", 1)[0] not in chosen]


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
    """Whether `synthflaw ARGV` should re-execute itself with its glibc tunables."""
    environ = os.environ if environ is None else environ
    if environ.get(RELAUNCHED) or not _missing(tunables_for(command_of(argv)), environ):
        return False  # not a model command, already relaunched, or the user set every tunable
    return sys.platform == "linux" and bool(sys.executable) and _glibc_supports_tunable() \
        and _transparent_huge_pages_usable()


def relaunch_environment(argv: list[str], environ) -> dict[str, str]:
    """`environ` with the tunables of `synthflaw ARGV` that the user did not set appended to
    GLIBC_TUNABLES (a user's own value wins), and the marker that stops a second relaunch."""
    env = dict(environ)
    added = _missing(tunables_for(command_of(argv)), env)
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES", ""), *added]))
    env[RELAUNCHED] = "1"
    return env


def relaunch(argv: list[str]) -> None:
    """Replace this process by `python -m synthflaw_jax ARGV` with its tunables set; returns
    only if the exec fails (the command then runs as it is)."""
    env = relaunch_environment(argv, os.environ)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, "-m", "synthflaw_jax", *argv], env)
    except OSError as err:
        log.debug("could not re-execute with %s (%s); running as is", env["GLIBC_TUNABLES"], err)


def note_relaunched() -> None:
    """Log (at DEBUG) that this process is the re-executed one."""
    if os.environ.get(RELAUNCHED):
        log.debug("running with GLIBC_TUNABLES=%s", os.environ.get("GLIBC_TUNABLES", ""))
