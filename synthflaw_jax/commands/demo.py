"""`synthflaw demo [--quick] --out DIR`: the whole tool on the embedded tiny default."""
from __future__ import annotations

import pathlib

HELP = "run the end-to-end demo on the embedded tiny model and write DIR/report.md"


def add_arguments(parser) -> None:
    """--out, --overwrite, --quick, --seed."""
    parser.add_argument("--out", default="synthflaw_demo", help="output directory (default: ./synthflaw_demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quick", action="store_true", help="smallest settings (CI smoke test)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    """Run the demo stages and print where the report is."""
    from synthflaw_jax.convert import atomic_output_dir
    from synthflaw_jax.demo import conversion

    out = pathlib.Path(args.out)
    with atomic_output_dir(out, overwrite=args.overwrite) as tmp:
        result = conversion.run(tmp, seed=args.seed)
        ok = result.tensors_identical and result.max_logit_diff_roundtrip == 0.0
        report = ["# synthflaw demo", "", conversion.report_section(result)]
        (tmp / "report.md").write_text("\n".join(report))
    print(conversion.report_section(result).replace(str(tmp), str(out)))
    print(f"report: {out / 'report.md'}")
    return 0 if ok else 1
