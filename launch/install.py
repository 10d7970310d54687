#!/usr/bin/env python3
"""Install synthflaw_jax on every worker of a TPU VM / pod slice (--worker=all).

Copies this checkout (default: the files git tracks or would track, local edits included,
never ignored ones such as demo outputs, virtual environments or caches) or clones a git URL to ~/synthflaw_jax on each worker, makes a
Python 3.11 virtual environment ~/synthflaw-venv with uv, installs the project with
jax[tpu], and prints each worker's process index and device counts as a check.

Examples:
  python3 launch/install.py --project my-proj --zone us-east5-a --name unlearn-7b
  python3 launch/install.py --project my-proj --zone us-east5-a --name unlearn-7b \\
      --git-url https://github.com/you/synthflaw_jax.git --git-ref main
"""
from __future__ import annotations

import pathlib
import re
import shlex
import subprocess

import _common as c

TARBALL = "/tmp/synthflaw_jax-src.tar.gz"
# only for a copy that is not a git checkout (e.g. an unpacked archive): git's view is used otherwise
EXCLUDES = (".git", "__pycache__", ".pytest_cache", "*.egg-info", ".venv", "venv", "build", "dist",
            "synthflaw_demo", "out", "runs", ".cache", ".ipynb_checkpoints")


def source_files(root: pathlib.Path) -> list[str] | None:
    """Paths (relative to `root`) of the files to copy: tracked ones and new untracked ones that
    git does not ignore; None when `root` is not a git checkout or git is missing."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    names = sorted({n for n in out.decode().split("\0") if n})
    return [n for n in names if (root / n).is_file()]  # a tracked file deleted locally is not copied


def pack_command(root: pathlib.Path) -> list[str]:
    """The tar command that packs the checkout at `root` into TARBALL. For a git checkout the
    file list is written next to the tarball (so --dry-run shows what would be copied)."""
    files = source_files(root)
    if files is None:
        return ["tar", "-czf", TARBALL, *(f"--exclude={e}" for e in EXCLUDES), "-C", str(root), "."]
    listing = pathlib.Path(TARBALL.removesuffix(".tar.gz") + ".files")
    listing.write_text("\0".join(files) + "\0")
    return ["tar", "-czf", TARBALL, "-C", str(root), "--null", "-T", str(listing)]


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
        commands.append(pack_command(c.REPO_ROOT))
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
