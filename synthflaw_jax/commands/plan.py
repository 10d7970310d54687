"""`synthflaw plan --config PATH [--topology v5p-128] [--json] [--config.key=value ...]`."""
from __future__ import annotations

HELP = ("compile the unlearning step for a TPU slice on fake CPU devices: per-device memory, FLOPs, "
        "estimated step time and MFU, fits or not")


def add_arguments(parser) -> None:
    """--config, --topology, --json, --timeout; `--config.a.b=value` overrides after them."""
    from synthflaw_jax.tpu_specs import topology_names

    parser.add_argument("--config", required=True, help="Python config file with get_config() (see configs/)")
    parser.add_argument("--topology", default=None,
                        help=f"TPU slice, e.g. v5p-128 or v5e-16 ({topology_names()}); "
                             "default: the config's tpu.topology")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed for compiling (default 3600)")
    parser.set_defaults(_accepts_overrides=True)
    parser.epilog = ("Nothing is allocated: the step is compiled with abstract arrays on one fake CPU device per "
                     "chip. Memory of temporaries, step time and MFU are estimates.")


def run(args) -> int:
    """Plan, then print the report (or JSON)."""
    import json

    from synthflaw_jax.planning import report, runner

    result = runner.run_plan(args.config, args.overrides, args.topology, timeout=args.timeout)
    print(json.dumps(result, indent=2) if args.json else report.format_plan(result))
    return 0
