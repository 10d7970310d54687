"""`synthflaw eval <benchmark>`: evaluate a model or its saved outputs.

Sub-subcommands live in `SUBCOMMANDS` (name -> help, add_arguments, run); add a new
benchmark by writing those three and one entry there.
"""
from __future__ import annotations

import argparse
from typing import Callable, NamedTuple

HELP = "Evaluate a model or its outputs (ifeval: verifiable instruction following)."


class Subcommand(NamedTuple):
    """One `synthflaw eval` sub-subcommand."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------- ifeval

IFEVAL_HELP = (
    "IFEval instruction following (Zhou et al. 2023), offline: score a response file "
    "(--responses) or generate responses with a model (--model), then write "
    "OUT/metrics.json and OUT/per_prompt.jsonl."
)


def _add_ifeval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prompts",
        metavar="FILE",
        help="IFEval prompts JSONL {key, prompt, instruction_id_list, kwargs} "
        "(default: the small prompt set shipped with synthflaw_jax)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--responses", metavar="FILE", help="responses JSONL {prompt, response} to score"
    )
    source.add_argument(
        "--model", metavar="PATH", help="model (HF directory or checkpoint) to generate with"
    )
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument(
        "--overwrite", action="store_true", help="write into --out even if it is not empty"
    )
    gen = p.add_argument_group("generation (with --model)")
    gen.add_argument("--max-new-tokens", type=int, default=1280, help="default: 1280")
    gen.add_argument(
        "--temperature", type=float, default=0.0, help="0 means greedy (default: 0)"
    )
    gen.add_argument("--batch-size", type=int, default=8, help="default: 8")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")


def _run_ifeval(args: argparse.Namespace) -> int:
    from synthflaw_jax.eval import ifeval

    metrics = ifeval.run(
        out_dir=args.out,
        prompts_path=args.prompts,
        responses_path=args.responses,
        model_path=args.model,
        overwrite=args.overwrite,
        gen_kwargs={
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "batch_size": args.batch_size,
            "seed": args.seed,
        },
    )
    c = metrics["counts"]
    print(f"IFEval: {c['prompts']} prompts, {c['instructions']} instructions")
    for key in (
        "prompt_level_strict_acc",
        "inst_level_strict_acc",
        "prompt_level_loose_acc",
        "inst_level_loose_acc",
    ):
        print(f"  {key:24s} {metrics[key]:.4f}")
    print(f"results in {args.out}")
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "ifeval": Subcommand(IFEVAL_HELP, _add_ifeval_arguments, _run_ifeval),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-subparser per benchmark in SUBCOMMANDS."""
    sub = parser.add_subparsers(dest="eval_command", metavar="BENCHMARK", required=True)
    for name, cmd in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_eval_run=cmd.run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen benchmark."""
    return int(args._eval_run(args) or 0)
