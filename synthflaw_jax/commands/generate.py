"""`synthflaw generate`: completions from a model with the KV-cache decoder."""
from __future__ import annotations

import argparse
import json
import sys

HELP = ("Generate text from a model (HF directory or checkpoint): greedy by default, or sampled "
        "with --temperature/--top-k/--top-p; prints or writes {prompt, response} JSON lines.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `synthflaw generate`."""
    parser.add_argument("--model", required=True, metavar="PATH", help="HF model directory, synthflaw checkpoint, or a named model (smollm2-135m-instruct)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="one prompt")
    src.add_argument("--prompts", metavar="FILE", help="JSONL with a 'prompt' string on each line")
    parser.add_argument("--out", metavar="FILE", help="write {prompt, response} JSONL here instead of stdout")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_generation_arguments(parser, max_new_tokens=256)
    add_placement_arguments(parser)


def add_generation_arguments(parser, max_new_tokens: int) -> None:
    """--max-new-tokens, sampling (--temperature/--top-k/--top-p/--seed), --batch-size and
    --no-chat-template; `generation_kwargs` turns them into `LoadedModel.generate` options."""
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"default: {max_new_tokens}")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default: 0)")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts decoded together (default: 8)")
    parser.add_argument("--no-chat-template", action="store_true",
                        help="feed prompts as plain text even when the tokenizer has a chat template")
    add_progress_argument(parser)


def add_progress_argument(parser) -> None:
    """--no-progress: no progress bar (prompts or sequences done; tokens/s when generating)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def generation_kwargs(args: argparse.Namespace) -> dict:
    """The sampling options of `add_generation_arguments` (all but --max-new-tokens)."""
    return dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                batch_size=args.batch_size, chat_template=not args.no_chat_template,
                progress=not args.no_progress)


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    """--mesh and --dtype: how the model's weights are placed and stored."""
    parser.add_argument("--mesh", metavar="D,F,T",
                        help="shard the model (and KV cache) over a DATA,FSDP,TENSOR mesh of all devices, e.g. 1,-1,1")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                        help="cast the stored weights (default: as stored)")


def load_model(args: argparse.Namespace):
    """The model of `--model`, placed per `--mesh`/`--dtype`."""
    from synthflaw_jax.commands.convert import parse_mesh
    from synthflaw_jax.models.loading import load

    return load(args.model, mesh=parse_mesh(args.mesh), dtype=args.dtype)


def read_prompts(path) -> list[str]:
    """The `prompt` of each line of a JSONL file (file and line named on errors)."""
    from synthflaw_jax.errors import SynthflawError
    from synthflaw_jax.jsonl import iter_objects

    prompts = []
    for n, obj in iter_objects(path):
        if not isinstance(obj.get("prompt"), str):
            raise SynthflawError(f"{path}:{n}: field 'prompt' must be a string")
        if not obj["prompt"].strip():
            raise SynthflawError(f"{path}:{n}: field 'prompt' is empty")
        prompts.append(obj["prompt"])
    if not prompts:
        raise SynthflawError(f"{path}: no prompts in the file")
    return prompts


def run(args: argparse.Namespace) -> int:
    """Load the model, generate, print or write the responses."""
    from synthflaw_jax import outputs
    from synthflaw_jax.errors import SynthflawError

    out = None
    if args.out is not None:  # checked before the model is loaded: a mistake costs nothing
        out = outputs.check(args.out, args.overwrite, kind="file", inputs=[args.model, args.prompts], what="--out")
    if args.prompt is not None and not args.prompt.strip():
        raise SynthflawError("--prompt: is empty")
    if args.max_new_tokens < 1:
        raise SynthflawError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    prompts = [args.prompt] if args.prompt is not None else read_prompts(args.prompts)
    responses = load_model(args).generate(prompts, args.max_new_tokens, **generation_kwargs(args))
    records = [{"prompt": p, "response": r} for p, r in zip(prompts, responses)]
    if out is None:
        for r in records:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        outputs.write_text(out, text, args.overwrite, inputs=[args.model, args.prompts], what="--out")
        print(f"wrote {len(records)} responses to {out}")
    return 0
