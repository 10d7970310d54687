#!/usr/bin/env python3
"""Create a Cloud TPU VM or pod slice (v4, v5e, v5p, v6e), directly or as a queued resource.

Examples:
  python3 launch/create.py --project my-proj --zone us-east5-a --name unlearn-7b --topology v5p-16
  python3 launch/create.py --project my-proj --zone us-west4-a --name unlearn-7b --topology v5e-64 \\
      --queued --spot --valid-until-duration 12h
Check the fit first with `synthflaw plan --config configs/<model>.py --topology <slice>`.
"""
from __future__ import annotations

import re

import _common as c


def build_parser(prog):
    p = c.parser(prog, __doc__)
    p.add_argument("--topology", required=True, help=f"slice name: {c.topology_names()}")
    p.add_argument("--runtime-version", default=None,
                   help="TPU VM software image (default: the generation's, e.g. v2-alpha-tpuv5 for v5p)")
    p.add_argument("--queued", action="store_true",
                   help="request through queued resources (waits for capacity instead of failing)")
    p.add_argument("--queued-resource-id", default=None, help="queued resource id (default: NAME-qr)")
    tier = p.add_mutually_exclusive_group()
    tier.add_argument("--spot", action="store_true", help="Spot capacity (cheaper, can be preempted)")
    tier.add_argument("--reserved", action="store_true", help="use the project's reservation")
    p.add_argument("--valid-until-duration", default=None,
                   help="queued only: give up if not provisioned within this long, e.g. 6h, 2d")
    return p


def build_commands(args):
    topology = c.check_topology(args.topology)
    version = args.runtime_version or topology.chip.runtime_version
    if not re.fullmatch(r"[A-Za-z0-9._-]+", version):
        raise c.UsageError(f"--runtime-version {version!r} is not a runtime version name")
    if args.valid_until_duration and not args.queued:
        raise c.UsageError("--valid-until-duration needs --queued")
    if args.valid_until_duration and not re.fullmatch(r"\d+[smhd]", args.valid_until_duration):
        raise c.UsageError(f"--valid-until-duration {args.valid_until_duration!r}: use e.g. 90m, 6h, 2d")
    tier = ["--spot"] if args.spot else ["--reserved"] if args.reserved else []
    print(f"# {topology.name}: {topology.chips} {topology.chip.name} chips on {topology.hosts} host(s), "
          f"accelerator type {topology.accelerator_type}, runtime {version}")
    if not args.queued:
        return [["gcloud", "compute", "tpus", "tpu-vm", "create", args.name, *c.location(args),
                 f"--accelerator-type={topology.accelerator_type}", f"--version={version}", *tier]]
    qr = args.queued_resource_id or f"{args.name}-qr"
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", qr):
        raise c.UsageError(f"--queued-resource-id {qr!r} is not a valid id")
    until = [f"--valid-until-duration={args.valid_until_duration}"] if args.valid_until_duration else []
    return [
        ["gcloud", "compute", "tpus", "queued-resources", "create", qr, *c.location(args),
         f"--node-id={args.name}", f"--accelerator-type={topology.accelerator_type}",
         f"--runtime-version={version}", *tier, *until],
        ["gcloud", "compute", "tpus", "queued-resources", "describe", qr, *c.location(args),
         "--format=value(state.state)"],
    ]


if __name__ == "__main__":
    c.main("launch/create.py", build_parser, build_commands)
