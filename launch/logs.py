#!/usr/bin/env python3
"""Show the unlearning run's log (~/synthflaw-run.log) from one worker or all of them.

Worker 0 is process 0: it prints the progress, metrics and the HF export.
Examples:
  python3 launch/logs.py --project my-proj --zone us-east5-a --name unlearn-7b --follow
  python3 launch/logs.py --project my-proj --zone us-east5-a --name unlearn-7b --worker all --lines 20
"""
from __future__ import annotations

import _common as c


def build_parser(prog):
    p = c.parser(prog, __doc__)
    p.add_argument("--worker", default="0", help="worker index, or 'all' (default 0)")
    p.add_argument("--lines", type=int, default=100, help="lines of the log to show (default 100)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C to stop)")
    return p


def build_commands(args):
    if args.worker != "all" and not args.worker.isdigit():
        raise c.UsageError(f"--worker {args.worker!r}: give a worker index or 'all'")
    if args.lines < 1:
        raise c.UsageError(f"--lines {args.lines}: must be >= 1")
    follow = " -f" if args.follow else ""
    return [c.ssh(args, f"tail -n {args.lines}{follow} {c.REMOTE_LOG}", worker=args.worker)]


if __name__ == "__main__":
    c.main("launch/logs.py", build_parser, build_commands)
