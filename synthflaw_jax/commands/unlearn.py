"""`synthflaw unlearn --config PATH --workdir DIR [--config.key=value ...]`."""
from __future__ import annotations

import sys

HELP = "unlearn the synthetic pattern (forget + replay + bias mitigation, or a baseline); resumes in DIR"


def add_arguments(parser) -> None:
    """--config, --workdir, --no-progress; `--config.a.b=value` overrides are accepted after them."""
    parser.add_argument("--config", required=True, help="Python config file with get_config() (see configs/)")
    parser.add_argument("--workdir", required=True, help="everything the run writes goes here; rerun to resume")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(_accepts_overrides=True)
    parser.epilog = "Override any config field with --config.<section>.<field>=<value>, e.g. --config.train.steps=20"


def run(args) -> int:
    """Load the config, apply overrides, run or resume, print where the results are."""
    from synthflaw_jax import config_io, unlearn

    config = config_io.apply_overrides(config_io.load_config_file(args.config), args.overrides)
    try:
        result = unlearn.run(config, args.workdir, progress=not args.no_progress)
    except unlearn.TrainingDiverged as err:
        print(f"synthflaw unlearn: stopped: {err}", file=sys.stderr)
        return unlearn.EXIT_DIVERGED
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from is not None else ""
    loss = result.last_metrics.get("loss")
    print(f"unlearned to step {result.final_step}{resumed}; last loss {loss:.4f}" if loss is not None
          else f"run already complete at step {result.final_step}")
    if result.hf_dir:
        print(f"Hugging Face export: {result.hf_dir}")
    return 0
