"""`synthflaw eval <benchmark>`: evaluate a model or its saved outputs.

Sub-subcommands live in `SUBCOMMANDS` (name -> help, add_arguments, run); add a new
benchmark by writing those three and one entry there.
"""
from __future__ import annotations

import argparse
import functools
import pathlib
from typing import Callable, NamedTuple

from synthflaw_jax.commands.generate import (add_generation_arguments, add_placement_arguments,
                                              add_progress_argument, generation_kwargs, load_model)

HELP = ("Evaluate a model or its outputs: ifeval (instruction following), mc (multiple choice), "
        "ppl (perplexity), suite (several tasks on several models, side by side).")


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
        "--model", metavar="PATH", help="model (HF directory, checkpoint, or a named model such as smollm2-135m-instruct) to generate with"
    )
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty --out"
    )
    gen = p.add_argument_group("generation (with --model)")
    add_generation_arguments(gen, max_new_tokens=1280)
    add_placement_arguments(gen)


def _run_ifeval(args: argparse.Namespace) -> int:
    from synthflaw_jax.commands.convert import parse_mesh
    from synthflaw_jax.eval import ifeval

    metrics = ifeval.run(
        out_dir=args.out,
        prompts_path=args.prompts,
        responses_path=args.responses,
        model_path=args.model,
        overwrite=args.overwrite,
        gen_kwargs={
            "max_new_tokens": args.max_new_tokens,
            **generation_kwargs(args),
            "mesh": parse_mesh(args.mesh),
            "dtype": args.dtype,
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


# ---------------------------------------------------------------------------- mc

MC_HELP = (
    "Multiple choice by log-likelihood of each option given the question (JSONL with "
    "question/choices|option1..N/answer, or MMLU CSVs; a file or a directory), zero- or "
    "few-shot; writes OUT/metrics.json (acc, acc_norm, per subject) and OUT/per_item.jsonl."
)


def _add_model_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="PATH", required=True, help="HF model directory, synthflaw checkpoint, or a named model (smollm2-135m-instruct)")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default: 8)")
    add_placement_arguments(p)
    add_progress_argument(p)


def _add_mc_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_out(p)
    p.add_argument("--data", metavar="FILE|DIR", required=True,
                   help="questions: .jsonl/.json/.csv file or a directory of them")
    p.add_argument("--shots", type=int, default=0, help="solved examples before each question (default: 0)")
    p.add_argument("--dev", metavar="FILE|DIR",
                   help="draw the shots from here (default: the --data items, never the item itself)")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing the shots (default: 0)")
    p.add_argument("--style", choices=("text", "letter"), default="text",
                   help="score each option's text (default) or its letter after a lettered list (MMLU layout)")


def _run_mc(args: argparse.Namespace) -> int:
    from synthflaw_jax.eval import multiple_choice

    m = multiple_choice.run(functools.partial(load_model, args), args.data, args.out, dev=args.dev,
                            shots=args.shots, seed=args.seed, style=args.style, batch_size=args.batch_size,
                            overwrite=args.overwrite, inputs=[args.model], progress=not args.no_progress)
    print(f"multiple choice: {m['n']} questions, {args.shots}-shot: acc {m['acc']:.4f}, acc_norm {m['acc_norm']:.4f}")
    for subject, s in m["per_subject"].items():
        print(f"  {subject:32s} acc {s['acc']:.4f}  acc_norm {s['acc_norm']:.4f}  (n={s['n']})")
    print(f"results in {args.out}")
    return 0


# ---------------------------------------------------------------------------- ppl

PPL_HELP = (
    "Perplexity of a plain-text file (.txt/.md/no extension: one document) or JSON Lines "
    "(.jsonl/.json: 'text' per line): token-weighted "
    "NLL over sliding windows of --max-length tokens every --stride tokens; writes OUT/metrics.json."
)


def _add_ppl_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_out(p)
    p.add_argument("--data", metavar="FILE", required=True,
                   help="plain text (.txt, .md, no extension) or JSON Lines with a 'text' field (.jsonl, .json)")
    p.add_argument("--max-length", type=int, help="window length in tokens (default: the model's, at most 2048)")
    p.add_argument("--stride", type=int, help="window step in tokens (default: half the window)")


def _run_ppl(args: argparse.Namespace) -> int:
    from synthflaw_jax.eval import perplexity

    m = perplexity.run(functools.partial(load_model, args), args.data, args.out, max_length=args.max_length,
                       stride=args.stride, batch_size=args.batch_size, overwrite=args.overwrite,
                       inputs=[args.model], progress=not args.no_progress)
    print(f"perplexity {m['ppl']:.4f} (nll {m['nll']:.4f} over {m['tokens']} tokens, {m['windows']} windows)")
    print(f"results in {args.out}")
    return 0


# ---------------------------------------------------------------------------- suite

SUITE_HELP = (
    "Run a set of evaluations (--tasks or --config) on one or more models and write "
    "OUT/results.json, OUT/report.md (side-by-side table) and OUT/chart.png; with neither, "
    "runs ifeval, mc and ppl on the small sets shipped with synthflaw_jax."
)


def _add_suite_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="[NAME=]PATH", action="append", required=True,
                   help="model to evaluate (repeat for several); NAME labels it in the report "
                        "(default: its directory, e.g. sft_a for runs/sft_a/hf)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--tasks", default="ifeval,mc,ppl",
                       help="comma-separated task types on the shipped data (default: ifeval,mc,ppl)")
    which.add_argument("--config", metavar="FILE",
                       help="JSON (or Python get_config()) with 'tasks': [{type, name, data/prompts, ...}]")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--batch-size", type=int, default=8, help="default: 8 (a --config's batch_size wins)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for sampling and shots (default: 0; a --config's seed wins)")
    p.add_argument("--max-new-tokens", type=int,
                   help="ifeval response length for --tasks (default: 256; in --config set it per task)")
    add_placement_arguments(p)
    add_progress_argument(p)


def _run_suite(args: argparse.Namespace) -> int:
    from synthflaw_jax.commands.convert import parse_mesh
    from synthflaw_jax.errors import SynthflawError
    from synthflaw_jax.eval import suite

    settings = {"batch_size": args.batch_size, "seed": args.seed}
    if args.config:
        tasks, from_file = suite.load_config(args.config)
        settings.update(from_file)
        if args.max_new_tokens is not None:
            raise SynthflawError("--max-new-tokens goes with --tasks; with --config set max_new_tokens per task")
    else:
        names = [t.strip() for t in args.tasks.split(",") if t.strip()]
        tasks = suite.parse_tasks(names, "--tasks")
        if args.max_new_tokens is not None:
            for t in tasks:
                if t.type == "ifeval":
                    t.options["max_new_tokens"] = args.max_new_tokens
    suite.run(args.model, tasks, args.out, overwrite=args.overwrite, mesh=parse_mesh(args.mesh), dtype=args.dtype,
              progress=not args.no_progress, **settings)
    print((pathlib.Path(args.out) / "report.md").read_text())
    print(f"results in {args.out}")
    return 0


SUBCOMMANDS: dict[str, Subcommand] = {
    "ifeval": Subcommand(IFEVAL_HELP, _add_ifeval_arguments, _run_ifeval),
    "mc": Subcommand(MC_HELP, _add_mc_arguments, _run_mc),
    "ppl": Subcommand(PPL_HELP, _add_ppl_arguments, _run_ppl),
    "suite": Subcommand(SUITE_HELP, _add_suite_arguments, _run_suite),
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
