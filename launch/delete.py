#!/usr/bin/env python3
"""Delete the TPU VM / pod slice (and its queued resource) so it stops billing.

Copy results out first: the workers' local disks go with it (gs:// workdirs stay).
Examples:
  python3 launch/delete.py --project my-proj --zone us-east5-a --name unlearn-7b
  python3 launch/delete.py --project my-proj --zone us-west4-a --name unlearn-7b --queued --yes
"""
from __future__ import annotations

import re

import _common as c


def build_parser(prog):
    p = c.parser(prog, __doc__)
    p.add_argument("--queued", action="store_true", help="the slice came from launch/create.py --queued")
    p.add_argument("--queued-resource-id", default=None, help="queued resource id (default: NAME-qr)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return p


def build_commands(args):
    quiet = ["--quiet"] if args.yes else []
    if args.queued:
        qr = args.queued_resource_id or f"{args.name}-qr"
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", qr):
            raise c.UsageError(f"--queued-resource-id {qr!r} is not a valid id")
        # --force deletes the TPU VM the queued resource created along with it
        return [["gcloud", "compute", "tpus", "queued-resources", "delete", qr, *c.location(args), "--force", *quiet]]
    if args.queued_resource_id:
        raise c.UsageError("--queued-resource-id needs --queued")
    return [["gcloud", "compute", "tpus", "tpu-vm", "delete", args.name, *c.location(args), *quiet]]


if __name__ == "__main__":
    c.main("launch/delete.py", build_parser, build_commands)
