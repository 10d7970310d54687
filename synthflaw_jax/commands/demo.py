"""`synthflaw demo [--quick] --out DIR`: the paper's story end to end on the embedded tiny model."""
from __future__ import annotations

HELP = "reproduce the synthetic-data flaw and its cure on the tiny model; writes DIR/report.md"


def add_arguments(parser) -> None:
    """--out, --overwrite, --quick, --seed, --no-progress."""
    parser.add_argument("--out", default="synthflaw_demo", help="output directory (default: ./synthflaw_demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quick", action="store_true", help="about 10x fewer steps and examples (CI smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=None,
                        help="comma-separated unlearning methods to run on arm (b), from "
                             "ul_pattern,ul_all,hinge,smooth,ga,npo,simnpo, or 'all' "
                             "(default: ul_pattern,hinge,ga)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """Run or resume the demo and print where the report is."""
    from synthflaw_jax import outputs
    from synthflaw_jax.demo import pipeline
    from synthflaw_jax.errors import SynthflawError

    outputs.check_location(args.out, "--out")
    overrides = {}
    if args.methods is not None:
        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        if methods == ("all",):
            methods = tuple(pipeline.METHODS)
        unknown = [m for m in methods if m not in pipeline.METHODS]
        if unknown or not methods:
            raise SynthflawError(f"--methods: unknown method(s) {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {', '.join(pipeline.METHODS)}")
        overrides["methods"] = methods
    settings = pipeline.Settings.make(seed=args.seed, quick=args.quick, **overrides)
    path = pipeline.run(args.out, overwrite=args.overwrite, progress_bars=not args.no_progress, settings=settings)
    print(path.read_text().split("## Results")[0])
    print(f"report: {path}")
    return 0
