#!/usr/bin/env python3
"""Run `synthflaw unlearn` on every worker at once (--worker=all), detached, logging to
~/synthflaw-run.log on each worker. Rerunning the same command resumes from the newest
checkpoint in --workdir.

Examples:
  python3 launch/run.py --project my-proj --zone us-east5-a --name unlearn-7b \\
      --config configs/llama2_7b.py --workdir gs://my-bucket/runs/llama2-7b-tofu
  python3 launch/run.py ... --config configs/llama2_7b.py --workdir /data/runs/try \\
      -- --config.train.steps=20 --config.checkpoint.every=10
  python3 launch/run.py ... --config gs://my-bucket/configs/mine.py --workdir gs://my-bucket/runs/mine \\
      -- --config.model.path=gs://my-bucket/models/llama-2-7b
Then follow it with launch/logs.py, stop it with launch/stop.py.
"""
from __future__ import annotations

import re
import shlex

import _common as c

_OVERRIDE = re.compile(r"--config\.[A-Za-z_][\w.]*=.*")
_ENV = re.compile(r"[A-Z_][A-Z0-9_]*=.*")
_GS = re.compile(r"gs://[a-z0-9][-a-z0-9_.]{1,220}/[\w./-]+")


def build_parser(prog):
    p = c.parser(prog, __doc__)
    p.add_argument("--config", required=True,
                   help="config file inside this repository (e.g. configs/llama2_7b.py) or in a bucket (gs://...)")
    p.add_argument("--workdir", required=True, help="run directory on the workers: an absolute path or gs://...")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the run, e.g. LIBTPU_INIT_ARGS=... (repeatable)")
    p.add_argument("--foreground", action="store_true", help="stay attached and stream output (Ctrl-C stops it)")
    p.add_argument("overrides", nargs="*", metavar="-- --config.key=value",
                   help="config overrides passed to synthflaw unlearn (after a --)")
    return p


def _config_path(given: str) -> str:
    """The --config as the workers see it: a bucket path as given (synthflaw reads it from
    the bucket), a repository file relative to the checkout that install.py copied."""
    if given.startswith("gs://"):
        if not _GS.fullmatch(given) or given.endswith("/"):
            raise c.UsageError(f"--config {given!r}: expected gs://BUCKET/PATH/TO/config.py")
        return given
    config = (c.REPO_ROOT / given).resolve()
    try:
        rel = config.relative_to(c.REPO_ROOT)
    except ValueError:
        raise c.UsageError(f"--config {given}: must be a file inside {c.REPO_ROOT} or a gs:// path") from None
    if not config.is_file():
        raise c.UsageError(f"--config {given}: no such file in {c.REPO_ROOT}")
    return rel.as_posix()


def build_commands(args):
    config = _config_path(args.config)
    workdir = args.workdir
    if not (workdir.startswith("/") or workdir.startswith("gs://")) or not re.fullmatch(r"[\w./:-]+", workdir):
        raise c.UsageError(f"--workdir {workdir!r}: give an absolute path or a gs:// path")
    for o in args.overrides:
        if not _OVERRIDE.fullmatch(o):
            raise c.UsageError(f"override {o!r}: expected --config.<field>=<value> after --")
    for e in args.env:
        if not _ENV.fullmatch(e):
            raise c.UsageError(f"--env {e!r}: expected KEY=VALUE with an upper-case KEY")
    unlearn = ["synthflaw", "unlearn", "--config", config, "--workdir", workdir, "--no-progress",
               *args.overrides]
    env = " ".join(shlex.quote(e) for e in args.env)
    line = " ".join(shlex.quote(x) for x in unlearn)
    if env:
        line = f"env {env} {line}"
    enter = f"source {c.REMOTE_VENV}/bin/activate && cd {c.REMOTE_REPO} || exit 1"
    if args.foreground:
        run = f"{enter}; {line} 2>&1 | tee {c.REMOTE_LOG}"
    else:
        # setsid: the run leads its own process group, which launch/stop.py ends as a whole
        run = (f"{enter}; setsid nohup {line} > {c.REMOTE_LOG} 2>&1 < /dev/null & echo $! > {c.REMOTE_PID}; "
               'echo "started on $(hostname): pid $(cat ' + c.REMOTE_PID + ')"')
    return [c.ssh(args, run)]


if __name__ == "__main__":
    c.main("launch/run.py", build_parser, build_commands)
