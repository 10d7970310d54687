"""Shared pieces of the launch/ scripts: argument checks, gcloud command building, running.

The scripts run on a workstation with the Google Cloud CLI (`gcloud`) and this repository
checked out; they need neither JAX nor the installed package (only `synthflaw_jax.tpu_specs`,
which is plain Python). Every script prints each gcloud command before it runs it, and with
`--dry-run` prints them and runs nothing. Bad arguments end the script with exit code 2 and
one line on stderr.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from synthflaw_jax.errors import SynthflawError  # noqa: E402
from synthflaw_jax.tpu_specs import parse_topology, topology_names  # noqa: E402

# on the TPU VMs (one of each per worker)
REMOTE_REPO = "~/synthflaw_jax"          # the project checkout
REMOTE_VENV = "~/synthflaw-venv"         # the Python 3.11 virtual environment
REMOTE_LOG = "~/synthflaw-run.log"       # stdout + stderr of the unlearning run
REMOTE_PID = "~/synthflaw-run.pid"       # process id of the unlearning run


class UsageError(SynthflawError):
    """A bad command-line argument."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line and exit code 2."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def parser(prog: str, description: str, needs_tpu: bool = True) -> Parser:
    """A parser with the flags every script shares (--project, --zone, --name, --dry-run)."""
    p = Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", required=True, help="Google Cloud project id")
    p.add_argument("--zone", required=True, help="zone with TPU capacity, e.g. us-east5-a (v5p), us-west4-a (v5e)")
    if needs_tpu:
        p.add_argument("--name", required=True, help="name of the TPU VM / pod slice")
    p.add_argument("--dry-run", action="store_true", help="print the gcloud commands and run nothing")
    return p


_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
_PROJECT = re.compile(r"[a-z][-a-z0-9.:]{4,61}[a-z0-9]")


def check_common(args) -> None:
    """Validate the shared flags; raise UsageError with one line."""
    if not _PROJECT.fullmatch(args.project):
        raise UsageError(f"--project {args.project!r} is not a Google Cloud project id")
    if not _ZONE.fullmatch(args.zone):
        raise UsageError(f"--zone {args.zone!r} is not a zone (e.g. us-central2-b)")
    name = getattr(args, "name", None)
    if name is not None and not _NAME.fullmatch(name):
        raise UsageError(f"--name {name!r}: lowercase letters, digits and '-', starting with a letter, <= 63 chars")


def check_topology(name: str):
    """The Topology for a slice name, or UsageError."""
    try:
        return parse_topology(name)
    except SynthflawError as err:
        raise UsageError(f"--topology: {err}") from None


def location(args) -> list[str]:
    """The --zone and --project flags of a gcloud command."""
    return [f"--zone={args.zone}", f"--project={args.project}"]


def ssh(args, command: str, worker: str = "all") -> list[str]:
    """`gcloud compute tpus tpu-vm ssh NAME --worker=W --command=...` (runs on every worker at once)."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, *location(args),
            f"--worker={worker}", f"--command={command}"]


def scp(args, local: str, remote: str, worker: str = "all") -> list[str]:
    """`gcloud compute tpus tpu-vm scp LOCAL NAME:REMOTE --worker=W`."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "scp", local, f"{args.name}:{remote}", *location(args),
            f"--worker={worker}"]


def venv_shell(*lines: str) -> str:
    """A bash command line that runs `lines` inside the project checkout and virtual environment."""
    return " && ".join(["set -e", f"source {REMOTE_VENV}/bin/activate", f"cd {REMOTE_REPO}", *lines])


def show(cmd: list[str]) -> str:
    """A command as one copy-pasteable shell line."""
    return " ".join(shlex.quote(c) for c in cmd)


def execute(commands: list[list[str]], dry_run: bool) -> int:
    """Print each command; unless dry_run, run them in order and stop at the first failure."""
    if not dry_run and shutil.which(commands[0][0]) is None:
        raise UsageError(f"{commands[0][0]} not found on PATH: install the Google Cloud CLI, or use --dry-run")
    for cmd in commands:
        print(("[dry-run] " if dry_run else "+ ") + show(cmd), flush=True)
        if dry_run:
            continue
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"command failed with exit code {rc}", file=sys.stderr)
            return rc
    return 0


def main(prog: str, build_parser, build_commands) -> None:
    """Parse, validate and run a script: `build_commands(args) -> list of argv lists`."""
    p = build_parser(prog)
    args = p.parse_args()
    try:
        check_common(args)
        commands = build_commands(args)
        rc = execute(commands, args.dry_run)
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rc)


__all__ = ["REMOTE_REPO", "REMOTE_VENV", "REMOTE_LOG", "REMOTE_PID", "UsageError", "parser", "check_common",
           "check_topology", "location", "ssh", "scp", "venv_shell", "show", "execute", "main",
           "topology_names", "REPO_ROOT"]
