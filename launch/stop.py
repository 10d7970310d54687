#!/usr/bin/env python3
"""Stop the unlearning run on every worker (--worker=all), and optionally the TPU VM itself.

The run is ended by the process id launch/run.py recorded (~/synthflaw-run.pid); the next
launch/run.py with the same --workdir resumes from the newest complete checkpoint.
`--vm` also stops the TPU VM (single-host slices only; delete pod slices with launch/delete.py).
Examples:
  python3 launch/stop.py --project my-proj --zone us-east5-a --name unlearn-7b
  python3 launch/stop.py --project my-proj --zone us-west4-a --name small-v5e --vm
"""
from __future__ import annotations

import _common as c


def build_parser(prog):
    p = c.parser(prog, __doc__)
    p.add_argument("--vm", action="store_true", help="also stop the TPU VM (stops billing for single-host VMs)")
    p.add_argument("--grace", type=int, default=60,
                   help="seconds to wait after SIGTERM before SIGKILL (default 60)")
    return p


def build_commands(args):
    if args.grace < 0:
        raise c.UsageError(f"--grace {args.grace}: must be >= 0")
    pid = c.REMOTE_PID
    kill = (f"if [ -f {pid} ]; then p=$(cat {pid}); kill -TERM -- -$p 2>/dev/null || kill $p 2>/dev/null || true; "
            f"for i in $(seq {args.grace}); do kill -0 $p 2>/dev/null || break; sleep 1; done; "
            f"kill -KILL -- -$p 2>/dev/null || true; rm -f {pid}; echo \"stopped $p on $(hostname)\"; "
            "else echo \"no run on $(hostname)\"; fi")
    commands = [c.ssh(args, kill)]
    if args.vm:
        commands.append(["gcloud", "compute", "tpus", "tpu-vm", "stop", args.name, *c.location(args)])
    return commands


if __name__ == "__main__":
    c.main("launch/stop.py", build_parser, build_commands)
