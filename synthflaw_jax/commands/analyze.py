"""`synthflaw analyze`: does a synthetic corpus carry the flaw, and has a model picked it up?"""
from __future__ import annotations

import argparse

HELP = ("Compare a synthetic corpus with a reference corpus (patterns, token distribution, embeddings; "
        "model loss and output shift when models are given) and write metrics.json, plots and report.md.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `synthflaw analyze`."""
    from synthflaw_jax.analysis.options import AnalyzeOptions as D

    parser.add_argument("--synthetic", required=True, metavar="FILE",
                        help="synthetic corpus: .jsonl/.json ({text} | {question,answer} | {prompt,response} | "
                             "{messages}) or .txt (blank-line-separated documents)")
    parser.add_argument("--reference", required=True, metavar="FILE",
                        help="non-synthetic reference corpus, same formats")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist or be empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument("--model", metavar="PATH", help="checkpoint or HF folder: embeddings and per-corpus loss")
    parser.add_argument("--model-b", metavar="PATH", help="second model: output shift from --model to this one")
    parser.add_argument("--probes", metavar="FILE",
                        help="probe prompts for the shift (.jsonl with 'prompt', or .txt); default: the reference "
                             "corpus's prompts")
    parser.add_argument("--metrics", metavar="FILE", help="a run's metrics JSONL: plot its loss curves per stream")
    parser.add_argument("--sample", type=int, default=D.sample, metavar="N",
                        help=f"use at most N documents per corpus, sampled with --seed (default {D.sample}; "
                             "0 = all)")
    parser.add_argument("--seed", type=int, default=D.seed, help=f"seed for sampling, CV and t-SNE (default {D.seed})")
    parser.add_argument("--tokens", choices=("words", "model"), default=D.tokens,
                        help="tokens for the pattern and distribution metrics (default: words)")
    parser.add_argument("--template-k", type=int, default=D.template_k, metavar="K",
                        help=f"template length in tokens (default {D.template_k})")
    parser.add_argument("--probe-count", type=int, default=D.probe_count, metavar="N",
                        help=f"probe prompts used for the shift (default {D.probe_count})")
    parser.add_argument("--batch-size", type=int, default=D.batch_size,
                        help=f"model batch size (default {D.batch_size})")
    parser.add_argument("--max-len", type=int, default=D.max_len,
                        help=f"tokens per document fed to a model (default {D.max_len})")
    parser.add_argument("--max-new-tokens", type=int, default=D.max_new_tokens,
                        help=f"greedy tokens generated per probe (default {D.max_new_tokens})")


def run(args: argparse.Namespace) -> int:
    """Run the analysis and print where the report went."""
    from synthflaw_jax.analysis.options import AnalyzeOptions
    from synthflaw_jax.analysis.report import analyze

    opts = AnalyzeOptions(
        synthetic=args.synthetic, reference=args.reference, out=args.out, overwrite=args.overwrite,
        model=args.model, model_b=args.model_b, probes=args.probes, metrics=args.metrics,
        sample=args.sample or None, seed=args.seed, tokens=args.tokens, template_k=args.template_k,
        probe_count=args.probe_count, batch_size=args.batch_size, max_len=args.max_len,
        max_new_tokens=args.max_new_tokens,
    )
    analyze(opts)
    print(f"wrote {args.out}/report.md, metrics.json and plots")
    return 0
