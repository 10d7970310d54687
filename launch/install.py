#!/usr/bin/env python3
"""Install synthflaw_jax on every worker of a TPU VM / pod slice (--worker=all).

Copies this checkout (default) or clones a git URL to ~/synthflaw_jax on each worker, makes a
Python 3.11 virtual environment ~/synthflaw-venv with uv, installs the project with
jax[tpu], and prints each worker's process index and device counts as a check.

Examples:
  python3 launch/install.py --project my-proj --zone us-east5-a --name unlearn-7b
  python3 launch/install.py --project my-proj --zone us-east5-a --name unlearn-7b \\
      --git-url https://github.com/you/synthflaw_jax.git --git-ref main
"""
from __future__ import annotations

import re
import shlex

import _common as c

TARBALL = "/tmp/synthflaw_jax-src.tar.gz"
EXCLUDES = (".git", "__pycache__", ".pytest_cache", "*.egg-info", ".venv", "venv", "build", "dist")


def build_parser(prog):
    p = c.parser(prog, __doc__)
    p.add_argument("--git-url", default=None, help="clone this repository instead of copying the local checkout")
    p.add_argument("--git-ref", default="main", help="branch, tag or commit to check out with --git-url")
    p.add_argument("--python", default="3.11", help="Python version of the worker venv (default 3.11)")
    p.add_argument("--jax-version", default="0.10.2", help="jax[tpu] version (default: the project's pin)")
    return p


def build_commands(args):
    if not re.fullmatch(r"3\.\d+", args.python):
        raise c.UsageError(f"--python {args.python!r}: give a version like 3.11")
    if not re.fullmatch(r"\d+\.\d+\.\d+", args.jax_version):
        raise c.UsageError(f"--jax-version {args.jax_version!r}: give a version like 0.10.2")
    commands = []
    if args.git_url:
        if not re.fullmatch(r"(https://|git@|ssh://)\S+", args.git_url):
            raise c.UsageError(f"--git-url {args.git_url!r} is not an https/ssh git URL")
        if not re.fullmatch(r"[\w./-]+", args.git_ref):
            raise c.UsageError(f"--git-ref {args.git_ref!r} is not a branch, tag or commit")
        fetch = (f"rm -rf {c.REMOTE_REPO} && git clone --quiet {shlex.quote(args.git_url)} {c.REMOTE_REPO} "
                 f"&& git -C {c.REMOTE_REPO} checkout --quiet {shlex.quote(args.git_ref)}")
    else:
        excludes = [f"--exclude={e}" for e in EXCLUDES]
        commands.append(["tar", "-czf", TARBALL, *excludes, "-C", str(c.REPO_ROOT), "."])
        commands.append(c.scp(args, TARBALL, "~/synthflaw_jax-src.tar.gz"))
        fetch = (f"rm -rf {c.REMOTE_REPO} && mkdir -p {c.REMOTE_REPO} "
                 f"&& tar -xzf ~/synthflaw_jax-src.tar.gz -C {c.REMOTE_REPO}")
    commands.append(c.ssh(args, f"set -e && {fetch}"))
    install = " && ".join([
        "set -e",
        "(command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh)",
        'export PATH="$HOME/.local/bin:$PATH"',
        f"uv venv --quiet --allow-existing --python {args.python} {c.REMOTE_VENV}",
        f"uv pip install --quiet --python {c.REMOTE_VENV}/bin/python -e {c.REMOTE_REPO} "
        f"'jax[tpu]=={args.jax_version}'",
    ])
    commands.append(c.ssh(args, install))
    check = ("python -c 'import jax; print(\"worker\", jax.process_index(), \"local devices\", "
             "jax.local_device_count(), \"global devices\", jax.device_count(), jax.devices()[0].device_kind)'"
             " && synthflaw --help > /dev/null")
    commands.append(c.ssh(args, c.venv_shell(check)))
    return commands


if __name__ == "__main__":
    c.main("launch/install.py", build_parser, build_commands)
