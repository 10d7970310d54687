"""`synthflaw demo [--quick] --out DIR`: the paper's story end to end on the embedded tiny model."""
from __future__ import annotations

HELP = "reproduce the synthetic-data flaw and its cure on the tiny model; writes DIR/report.md"


def add_arguments(parser) -> None:
    """--out, --overwrite, --quick, --seed, --no-progress."""
    parser.add_argument("--out", default="synthflaw_demo", help="output directory (default: ./synthflaw_demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quick", action="store_true", help="about 10x fewer steps and examples (CI smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """Run or resume the demo and print where the report is."""
    from synthflaw_jax import outputs
    from synthflaw_jax.demo import pipeline

    outputs.check_location(args.out, "--out")
    path = pipeline.run(args.out, seed=args.seed, quick=args.quick, overwrite=args.overwrite,
                        progress=not args.no_progress)
    print(path.read_text().split("## Output distribution shift")[0])
    print(f"report: {path}")
    return 0
